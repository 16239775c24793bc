"""What the probe reads: the hidden states of the real tokens of every example (``Features``), from one backbone
pass with the chosen heads constant (``extract_features``), or from the averages' own pass (``averages_and_features``);
saved to disk and read back memory-mapped; and the batches the probe trains on (``BatchBuffer``, ``Rows``).
"""
from __future__ import annotations

import bisect
import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .averages import compute_average_attention
from .device import backbone_precision, model_device
from .layout import Encoded
from .packing import Batch, backbone_batches, run_backbone
from .replace import replace_heads
from ..records.runs import atomic_path
from ..settings.tasks import Task


def hidden_states(model, batch) -> torch.Tensor:
    """All N+1 hidden-state levels of one batch (a ``Batch``, packed or not, or a dict of padded inputs) stacked:
    [B, N+1, W, D], on the model's device."""
    out = run_backbone(model, batch, output_hidden_states=True)
    return torch.stack(out.hidden_states, dim=1)


@dataclass
class Features:
    """Probe inputs: hidden states [M, N+1, D] of real tokens only, grouped by example (ascending) and in slot order
    within one, with the `example` [M] and `slot` [M] of each row. Sentence tasks keep every real token (the probe
    pools them) and one label per example; token tasks keep only the labelled tokens (first sub-tokens: the loss
    and the metrics ignore the rest), one label per row."""

    states: torch.Tensor
    labels: torch.Tensor
    example: torch.Tensor
    slot: torch.Tensor
    token_task: bool = False

    def embeddings_only(self) -> "Features":
        """The same features restricted to hidden-state level 0 (a view, nothing copied)."""
        return Features(self.states[:, :1], self.labels, self.example, self.slot, self.token_task)

    def stop(self, n: int) -> int:
        """The first row of example n (rows of examples 0 .. n-1 come before it)."""
        return int(torch.searchsorted(self.example, torch.tensor(n, dtype=self.example.dtype)))

    def head(self, n: int) -> "Features":
        """Features of the first n examples (views, nothing copied)."""
        stop = self.stop(n)
        labels = self.labels[:stop] if self.token_task else self.labels[:n]
        return Features(self.states[:stop], labels, self.example[:stop], self.slot[:stop], self.token_task)

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of `states` that belong to the examples in `index`, in the order of `index`, and the position in
        `index` of each row's example."""
        starts = torch.searchsorted(self.example, index)
        stops = torch.searchsorted(self.example, index, right=True)
        counts = stops - starts
        owner = torch.repeat_interleave(torch.arange(len(index)), counts)
        rows = torch.repeat_interleave(starts - torch.cumsum(counts, 0) + counts, counts) + torch.arange(len(owner))
        return rows, owner

    def select(self, index: torch.Tensor, buffer: "BatchBuffer | None" = None) -> "ProbeBatch":
        """The probe's inputs for the examples in `index`, on the buffer's device (fp32 without a buffer)."""
        rows, owner = self.rows(index)
        states = self.states[rows].float() if buffer is None else buffer.take(self.states, rows)
        labels = self.labels[rows] if self.token_task else self.labels[index]
        device = states.device
        return ProbeBatch(states, Rows.of(owner, self.slot[rows], len(index)).to(device), labels.to(device))

    def chunks(self, rows: int):
        """(first example, end example, first row, end row) of runs of whole examples in order, at most `rows` rows
        each (or one example)."""
        n = int(self.example[-1]) + 1 if len(self.example) else 0
        bounds = torch.searchsorted(self.example, torch.arange(n + 1, dtype=self.example.dtype)).tolist()
        start = 0
        while start < n:
            stop = max(start + 1, bisect.bisect_right(bounds, bounds[start] + rows) - 1)
            yield start, stop, bounds[start], bounds[stop]
            start = stop


@dataclass
class Rows:
    """Where the M rows of a probe batch sit: `count` examples, row r in slot slot[r] of example owner[r]
    (0 .. count-1, ascending), the rank[r]-th row of its example; `width`: the most rows of one example."""

    slot: torch.Tensor
    owner: torch.Tensor
    rank: torch.Tensor
    count: int
    width: int
    blocks: tuple = ()  # (first example, end example, first row, end row) of runs of POOL_BLOCK examples

    @classmethod
    def of(cls, owner: torch.Tensor, slot: torch.Tensor, count: int) -> "Rows":
        """From the owners (ascending) and slots of the rows, on the CPU (no device synchronisation)."""
        rank = torch.arange(len(owner)) - torch.searchsorted(owner, owner)
        firsts = list(range(0, count, POOL_BLOCK)) + [count]
        starts = torch.searchsorted(owner, torch.tensor(firsts, dtype=owner.dtype)).tolist()
        blocks = tuple(zip(firsts[:-1], firsts[1:], starts[:-1], starts[1:]))
        return cls(slot, owner, rank, count, int(rank.max()) + 1 if len(rank) else 1, blocks)

    def to(self, device) -> "Rows":
        return Rows(self.slot.to(device), self.owner.to(device), self.rank.to(device), self.count, self.width,
                    self.blocks)


# examples per block of the sentence probe's pooling product (``SentenceProbe.pooled``): its cost grows with
# examples x rows of a block, so evaluation batches of hundreds of examples are pooled a block at a time
POOL_BLOCK = 16


@dataclass
class ProbeBatch:
    """What a probe takes: states [M, N+1, D] of some examples' rows (``Rows``), and their labels ([count], or [M]
    for token tasks)."""

    states: torch.Tensor
    rows: Rows
    labels: torch.Tensor

    def logits(self, probe: nn.Module) -> torch.Tensor:
        return probe(self.states, self.rows)


class BatchBuffer:
    """Two buffers, allocated once, that batches of cached (fp16, CPU) features are gathered into and converted
    into (fp32, or bf16 for a probe whose products run in bf16), the second on the probe's `device`.

    A fresh fp32 batch is a new allocation of several MB (MPNet: 40 kB per token row): the allocator maps
    fresh pages for it every step, and those page faults cost several times the copy itself. The tensor returned
    is overwritten by the next call, so use it before asking for the next batch."""

    def __init__(self, states: torch.Tensor, rows: int, dtype: torch.dtype = torch.float32, device=None):
        self.gathered = torch.empty((rows, *states.shape[1:]), dtype=states.dtype, device=states.device)
        self.full = torch.empty((rows, *states.shape[1:]), dtype=dtype, device=device or states.device)

    def _fit(self, states: torch.Tensor, n: int) -> None:
        if n > len(self.full):  # batches differ in their number of rows (tokens)
            self.__init__(states, max(n, 2 * len(self.full)), self.full.dtype, self.full.device)

    def take(self, states: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Copy of states[rows] in the buffer's dtype."""
        n = len(rows)
        self._fit(states, n)
        torch.index_select(states, 0, rows, out=self.gathered[:n])
        return self.full[:n].copy_(self.gathered[:n])

    def slice(self, states: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Copy of states[start:stop] in the buffer's dtype."""
        n = min(stop, len(states)) - start
        self._fit(states, n)
        return self.full[:n].copy_(states[start: start + n])


def _kept(task: Task, data: Encoded) -> torch.Tensor:
    """[n, L] the slots whose hidden states the probe reads: real tokens (sentence tasks), labelled real ones (token)."""
    real = data.attention_mask.bool()
    return (data.labels != -100) & real if task.token_task else real


def batch_rows(task: Task, data: Encoded, batch: Batch, states: torch.Tensor) -> ProbeBatch:
    """The probe's inputs from one backbone batch's hidden states [B, N+1, W, D] (on their device): the kept
    rows (``_kept``) of its examples, grouped by the batch's order of examples. Which rows: decided on the CPU."""
    owner, position = batch.token_mask.bool().nonzero(as_tuple=True)
    slot = batch.slots[owner, position]
    example = batch.examples[owner]
    if task.token_task:  # labelled real tokens (``_kept``)
        keep = data.labels[example, slot] != -100
        owner, position, slot, example = owner[keep], position[keep], slot[keep], example[keep]
        labels = data.labels[example, slot]
    else:
        labels = data.labels[batch.examples]
    device = states.device
    rows = states.transpose(1, 2)[owner.to(device), position.to(device)]  # [M, N+1, D]
    return ProbeBatch(rows, Rows.of(owner, slot, len(batch)).to(device), labels.to(device))


class FeatureWriter:
    """Fills the ragged features of `data` (fp16, CPU) from backbone batches in any order."""

    def __init__(self, task: Task, data: Encoded):
        self.task, self.data = task, data
        kept = _kept(task, data)
        self.example, self.slot = kept.nonzero(as_tuple=True)
        self.first = torch.cat([torch.zeros(1, dtype=torch.long), kept.sum(1).cumsum(0)])  # first row of each example
        self.states: torch.Tensor | None = None
        self.seen = torch.zeros(len(data), dtype=torch.bool)
        self.written = 0

    def add(self, batch: Batch, states: torch.Tensor) -> None:
        part = batch_rows(self.task, self.data, batch, states)
        owner, rank = part.rows.owner.cpu(), part.rows.rank.cpu()
        rows = self.first[batch.examples[owner]] + rank
        if self.states is None:
            self.states = torch.empty((len(self.example), *states.shape[1:2], states.shape[-1]), dtype=torch.float16)
        self.states[rows] = part.states.half().cpu()
        self.seen[batch.examples] = True
        self.written += len(rows)

    def result(self) -> Features:
        if not bool(self.seen.all()) or self.written != len(self.example):
            raise RuntimeError(f"{int((~self.seen).sum())} of {len(self.seen)} examples were not passed; "
                               f"{self.written} of {len(self.example)} rows written")
        labels = self.data.labels[self.example, self.slot] if self.task.token_task else self.data.labels
        return Features(self.states, labels, self.example, self.slot, self.task.token_task)


@torch.no_grad()
def extract_features(model, task: Task, data: Encoded, averages=None, heads=(), batch_size: int = 32,
                     progress: bool = False, desc: str = "features", precision: str = "fp32",
                     passes: str = "packed") -> Features:
    """Backbone pass (eval mode) over `data` with `heads` replaced by `averages`; hidden states of the real tokens
    kept in fp16 (``Features``). `passes`: over real tokens only ("packed") or the whole layout ("padded")."""
    model.eval()
    writer = FeatureWriter(task, data)
    with maybe_replaced(model, averages, heads), backbone_precision(precision, model_device(model)):
        for batch in tqdm(list(backbone_batches(data, batch_size, passes)), desc=desc, disable=not progress,
                          leave=False):
            writer.add(batch, hidden_states(model, batch))
    return writer.result()


def averages_and_features(model, task: Task, data: Encoded, batch_size: int = 32, progress: bool = False,
                          precision: str = "fp32", data_checksum: str | None = None, passes: str = "packed"):
    """One backbone pass (eval mode, no head replaced) over `data` that gives both the attention averages and
    the probe's baseline features (the same features as ``extract_features`` with no head replaced)."""
    writer = FeatureWriter(task, data)
    averages = compute_average_attention(model, backbone_batches(data, batch_size, passes), task=task.name,
                                         data_checksum=data_checksum, progress=progress, precision=precision,
                                         on_hidden_states=writer.add)
    return averages, writer.result()


FEATURE_FIELDS = ("states", "labels", "example", "slot")


def save_features(features: Features, path, meta: dict) -> Path:
    """Write features to disk atomically (read back memory-mapped by ``load_features``)."""
    tensors = {name: getattr(features, name) for name in FEATURE_FIELDS}
    with atomic_path(path) as tmp:
        torch.save({"tensors": tensors, "token_task": features.token_task, "meta": json.dumps(meta, sort_keys=True)},
                   tmp)
    return Path(path)


def load_features(path, meta: dict | None = None) -> Features | None:
    """Features saved by ``save_features``, memory-mapped (pages are read from disk as batches need them).
    None when the file is missing, unreadable, was saved with other `meta` or in another format."""
    try:
        saved = torch.load(path, mmap=True, weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None
    if meta is not None and saved.get("meta") != json.dumps(meta, sort_keys=True):
        return None
    if set(saved.get("tensors", {})) != set(FEATURE_FIELDS) or "token_task" not in saved:
        return None
    return Features(**saved["tensors"], token_task=saved["token_task"])


def maybe_replaced(model, averages, heads, gates=None):
    if gates is None and (averages is None or (not isinstance(heads, str) and len(heads) == 0)):
        return nullcontext()
    return replace_heads(model, averages, heads, gates=gates)
