"""The probe trained on top of a frozen (possibly PAPA-modified) encoder, and the gate-based head ranking.

Sentence tasks: per hidden-state level l (embeddings + every layer) v_l = sum_t w[l, t] m_t h_l[t] with w
[N+1, L] initialised to 1/L; concat the N+1 vectors, Linear((N+1)D -> D), tanh, dropout 0.1, Linear(D -> C).
Token tasks: per token, concat the N+1 hidden states, Linear((N+1)D -> D), tanh, Linear(D -> C).
Cross-entropy (MSE for regression); AdamW lr 2e-5 constant, weight decay 0, grad-norm clip 1.0, batch 16.

By default the backbone runs once in eval mode: its hidden states for every example are cached (fp16) and
every epoch and seed reuses them. ``protocol="reference"`` re-runs the backbone for every training batch
with dropout on, as the authors' code does.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .averages import compute_average_attention
from .device import PRECISIONS, autocast_dtype, backbone_precision, inputs_on, model_device
from .layout import Encoded
from .metrics import compute_metrics, example_statistics
from .models import describe
from .replace import replace_heads
from .runs import atomic_path
from .tasks import Task


PROTOCOLS = ("cached", "reference", "streaming")
# what cached features are converted to for the probe, by the precision of its products
PROBE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
LEVELS = ("all", "embeddings")


@dataclass(frozen=True)
class ProbeConfig:
    epochs: int = 15
    batch_size: int = 16
    lr: float = 2e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    dropout: float = 0.1
    feature_batch_size: int = 32
    protocol: str = "cached"  # "reference": backbone re-run for every batch with dropout on (the authors' code);
    # "streaming": backbone re-run for every batch in eval mode (same numbers as "cached", for splits whose
    # features do not fit in memory, e.g. the paper profile on a GPU)
    precision: str = "fp32"  # backbone passes in "fp32", "bf16" or "fp16" (autocast, device.py)
    probe_precision: str = "fp32"  # the probe's own products in "fp32" or "bf16" (autocast); its weights, the
    # optimizer and the loss stay fp32 either way (no fp16: its gradients would need loss scaling)
    levels: str = "all"  # hidden-state levels the probe sees: "all" (the paper's probe) or "embeddings" (level 0
    # only, before any attention: the attention-free reference)
    gate_lr: float | None = None  # head ranking: the gates' own learning rate (None: `lr`, the paper's setting)

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(map(repr, PROTOCOLS))}, got {self.protocol!r}")
        if self.levels not in LEVELS:
            raise ValueError(f"levels must be one of {', '.join(map(repr, LEVELS))}, got {self.levels!r}")
        for name, valid in (("precision", PRECISIONS), ("probe_precision", tuple(PROBE_DTYPES))):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}, got {getattr(self, name)!r}")


class SentenceProbe(nn.Module):
    def __init__(self, levels: int, length: int, hidden: int, labels: int, dropout: float = 0.1):
        super().__init__()
        self.slot_weights = nn.Parameter(torch.full((levels, length), 1.0 / length))
        self.pool = nn.Linear(levels * hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, labels)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """states [B, N+1, L, D], mask [B, L] -> logits [B, C]."""
        weights = self.slot_weights[None] * mask[:, None, :].to(self.slot_weights.dtype)  # [B, N+1, L]
        dtype = autocast_dtype(weights)  # bf16 inside the probe's bf16 autocast, else fp32
        pooled = torch.einsum("blt,bltd->bld", weights.to(dtype), states.to(dtype)).flatten(1)
        return self.classifier(self.dropout(torch.tanh(self.pool(pooled))))


class TokenProbe(nn.Module):
    def __init__(self, levels: int, hidden: int, labels: int):
        super().__init__()
        self.pool = nn.Linear(levels * hidden, hidden)
        self.classifier = nn.Linear(hidden, labels)

    def forward(self, states: torch.Tensor, mask=None) -> torch.Tensor:
        """states [M, N+1, D] of M tokens -> logits [M, C]."""
        return self.classifier(torch.tanh(self.pool(states.to(autocast_dtype(self.pool.weight)).flatten(1))))


def make_probe(task: Task, model, length: int, dropout: float = 0.1, levels: str = "all") -> nn.Module:
    """The probe for `task` on `model`'s hidden states: every level (N+1), or only the embeddings (1)."""
    info = describe(model)
    count = info["layers"] + 1 if levels == "all" else 1
    if task.token_task:
        return TokenProbe(count, info["hidden"], task.num_labels)
    return SentenceProbe(count, length, info["hidden"], task.num_labels, dropout)


def hidden_states(model, inputs: dict) -> torch.Tensor:
    """All N+1 hidden-state levels stacked: [B, N+1, L, D], on the model's device."""
    device = model_device(model)
    out = model(**inputs_on(inputs, device), output_hidden_states=True)
    return torch.stack(out.hidden_states, dim=1)


@dataclass
class Features:
    """Cached probe inputs of a split. Sentence tasks: states [n, N+1, L, D] and mask [n, L]. Token tasks:
    only the labelled positions (first sub-tokens; the loss and metrics ignore the rest), states [M, N+1, D]
    with `example` [M] (which example each row is from) and `slot` [M]."""

    states: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor | None = None
    example: torch.Tensor | None = None
    slot: torch.Tensor | None = None

    def embeddings_only(self) -> "Features":
        """The same features restricted to hidden-state level 0 (a view, nothing copied)."""
        return Features(self.states[:, :1], self.labels, self.mask, self.example, self.slot)

    def head(self, n: int) -> "Features":
        """Features of the first n examples (views, nothing copied)."""
        if self.example is None:
            return Features(self.states[:n], self.labels[:n], None if self.mask is None else self.mask[:n])
        stop = int(torch.searchsorted(self.example, torch.tensor(n)))  # rows are grouped by example, ascending
        return Features(self.states[:stop], self.labels[:stop], None, self.example[:stop], self.slot[:stop])

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Rows of `states` that belong to the examples in `index`, in the order of `index`."""
        if self.example is None:
            return index
        # rows are grouped by example (ascending); take each example's rows in the order of `index`
        starts = torch.searchsorted(self.example, index)
        stops = torch.searchsorted(self.example, index, right=True)
        return torch.cat([torch.arange(a, b) for a, b in zip(starts.tolist(), stops.tolist())])

    def select(self, index: torch.Tensor, buffer: "BatchBuffer | None" = None):
        """Probe inputs (fp32, or the buffer's dtype and device) and labels of the examples in `index`; mask
        and labels on the states' device."""
        rows = self.rows(index)
        states = self.states[rows].float() if buffer is None else buffer.take(self.states, rows)
        mask = None if self.mask is None else self.mask[index].to(states.device)
        return states, mask, self.labels[rows].to(states.device)


class BatchBuffer:
    """Two buffers, allocated once, that batches of cached (fp16, CPU) features are gathered into and converted
    into (fp32, or bf16 for a probe whose products run in bf16), the second on the probe's `device`.

    A fresh fp32 batch is a new allocation of up to 40 MB (MPNet, L = 64, 16 examples): the allocator maps
    fresh pages for it every step, and those page faults cost several times the copy itself. The tensor returned
    is overwritten by the next call, so use it before asking for the next batch."""

    def __init__(self, states: torch.Tensor, rows: int, dtype: torch.dtype = torch.float32, device=None):
        self.gathered = torch.empty((rows, *states.shape[1:]), dtype=states.dtype, device=states.device)
        self.full = torch.empty((rows, *states.shape[1:]), dtype=dtype, device=device or states.device)

    def _fit(self, states: torch.Tensor, n: int) -> None:
        if n > len(self.full):  # token tasks: batches differ in their number of labelled positions
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


def labelled_rows(states: torch.Tensor, labels: torch.Tensor):
    """[B, N+1, L, D] states and [B, L] labels -> states [M, N+1, D] of labelled positions, their labels,
    example index and slot."""
    example, slot = (labels != -100).nonzero(as_tuple=True)
    return states[example, :, slot], labels[example, slot], example, slot


def features_of(task: Task, data: Encoded, states: torch.Tensor, offset: int = 0, index=None) -> Features:
    """Features from the states of examples data[index] (default: data[offset : offset + len(states)]), all on
    the states' device."""
    if index is None:
        index = torch.arange(offset, offset + states.shape[0])
    index = index.cpu()  # the batch's rows are taken on the CPU, then only they move
    labels = data.labels[index].to(states.device)
    if task.token_task:
        rows, labels, example, slot = labelled_rows(states, labels)
        return Features(rows, labels, example=index.to(states.device)[example], slot=slot)
    return Features(states, labels, mask=data.attention_mask[index].to(states.device))


def concat(parts: list[Features]) -> Features:
    first = parts[0]
    cat = lambda name: None if getattr(first, name) is None else torch.cat([getattr(p, name) for p in parts])  # noqa
    return Features(cat("states"), cat("labels"), cat("mask"), cat("example"), cat("slot"))


@torch.no_grad()
def extract_features(model, task: Task, data: Encoded, averages=None, heads=(), batch_size: int = 32,
                     progress: bool = False, desc: str = "features", precision: str = "fp32") -> Features:
    """Backbone pass (eval mode) over `data` with `heads` replaced by `averages`; hidden states kept in fp16."""
    model.eval()
    parts = []
    with _maybe_replaced(model, averages, heads), backbone_precision(precision, model_device(model)):
        for start in tqdm(range(0, len(data), batch_size), desc=desc, disable=not progress, leave=False):
            states = hidden_states(model, data.model_inputs(slice(start, start + batch_size))).half().cpu()
            parts.append(features_of(task, data, states, start))
    return concat(parts)


def averages_and_features(model, task: Task, data: Encoded, batch_size: int = 32, progress: bool = False,
                          precision: str = "fp32", data_checksum: str | None = None):
    """One backbone pass (eval mode, no head replaced) over `data` that gives both the attention averages and
    the probe's baseline features (the same features as ``extract_features`` with no head replaced)."""
    parts, seen = [], [0]

    def keep(states):
        parts.append(features_of(task, data, states.half().cpu(), offset=seen[0]))
        seen[0] += states.shape[0]

    averages = compute_average_attention(model, data.batches(batch_size), task=task.name, data_checksum=data_checksum,
                                         progress=progress, precision=precision, on_hidden_states=keep)
    return averages, concat(parts)


def save_features(features: Features, path, meta: dict) -> Path:
    """Write features to disk atomically (read back memory-mapped by ``load_features``)."""
    tensors = {name: getattr(features, name) for name in ("states", "labels", "mask", "example", "slot")
               if getattr(features, name) is not None}
    with atomic_path(path) as tmp:
        torch.save({"tensors": tensors, "meta": json.dumps(meta, sort_keys=True)}, tmp)
    return Path(path)


def load_features(path, meta: dict | None = None) -> Features | None:
    """Features saved by ``save_features``, memory-mapped (pages are read from disk as batches need them).
    None when the file is missing, unreadable, or was saved with other `meta`."""
    try:
        saved = torch.load(path, mmap=True, weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None
    if meta is not None and saved.get("meta") != json.dumps(meta, sort_keys=True):
        return None
    return Features(**saved["tensors"])


def _maybe_replaced(model, averages, heads, gates=None):
    from contextlib import nullcontext

    if gates is None and (averages is None or (not isinstance(heads, str) and len(heads) == 0)):
        return nullcontext()
    return replace_heads(model, averages, heads, gates=gates)


def _loss(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task.is_regression:
        return nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
    return nn.functional.cross_entropy(logits.float(), labels)


def eval_rows(states: torch.Tensor) -> int:
    """Rows per evaluation batch: about 16 M numbers (64 MB in fp32), at least 16 rows."""
    return max(16, min(len(states), 2 ** 24 // max(1, states[0].numel())))


def evaluate(probe: nn.Module, task: Task, features: Features, data: Encoded, buffer: BatchBuffer | None = None) -> dict:
    """Task metrics of the probe on cached dev features."""
    return compute_metrics(task, predict(probe, task, features, data, buffer), data.labels.numpy())


@torch.no_grad()
def predict(probe: nn.Module, task: Task, features: Features, data: Encoded, buffer: BatchBuffer | None = None,
            precision: str = "fp32"):
    """The probe's predictions on cached dev features, shaped like ``data.labels`` (numpy): class ids (scores
    for regression); token tasks [n, L] with -100 where nothing is predicted. `precision`: of its products."""
    probe.eval()
    device = model_device(probe)
    n = features.states.shape[0]
    batch_size = eval_rows(features.states)
    buffer = buffer or BatchBuffer(features.states, batch_size, PROBE_DTYPES[precision], device)
    with backbone_precision(precision, device):
        logits = torch.cat([probe(buffer.slice(features.states, s, s + batch_size),
                                  None if features.mask is None else features.mask[s: s + batch_size].to(device))
                            .float().cpu() for s in range(0, n, batch_size)])
    return _predictions(task, logits, data, features.example, features.slot)


def _predictions(task: Task, logits: torch.Tensor, data: Encoded, example=None, slot=None):
    """Predictions shaped like ``data.labels`` (numpy) from the probe's logits (CPU) on every dev example (token
    tasks: on the labelled positions `example`, `slot`)."""
    predicted = logits.squeeze(-1) if task.is_regression else logits.argmax(-1)
    if task.token_task:  # back to [n, L] with -100 where nothing is predicted
        grid = torch.full_like(data.labels, -100)
        grid[example.cpu(), slot.cpu()] = predicted
        return grid.numpy()
    return predicted.numpy()


@torch.no_grad()
def predict_streaming(model, probe: nn.Module, task: Task, data: Encoded, config: "ProbeConfig", averages=None,
                      heads=()):
    """The probe's predictions on `data` with the backbone run again batch by batch (eval mode, `heads`
    replaced) and nothing kept but the logits: a whole split's hidden states never sit in memory."""
    probe.eval()
    device = model_device(model)
    logits, examples, slots = [], [], []
    with _maybe_replaced(model, averages, heads):
        for start in range(0, len(data), config.feature_batch_size):
            with backbone_precision(config.precision, device):
                states = hidden_states(model, data.model_inputs(slice(start, start + config.feature_batch_size)))
            live = features_of(task, data, states.half(), offset=start)
            live = live.embeddings_only() if config.levels == "embeddings" else live
            with backbone_precision(config.probe_precision, device):
                logits.append(probe(live.states, live.mask).float().cpu())
            if task.token_task:
                examples.append(live.example)
                slots.append(live.slot)
    return _predictions(task, torch.cat(logits), data, *((torch.cat(examples), torch.cat(slots))
                                                          if task.token_task else ()))




@dataclass
class ProbeResult:
    metrics: dict  # final epoch, task metrics in points
    curve: list = field(default_factory=list)  # per epoch: {"epoch", "train_loss", **metrics}
    seconds: float = 0.0
    # final epoch, per dev example: the counts its headline metric is made of (metrics.example_statistics),
    # for bootstraps over dev examples; None for regression tasks
    dev_statistics: np.ndarray | None = None


def train_probe(model, task: Task, train: Encoded, dev: Encoded, *, seed: int = 42,
                config: ProbeConfig | None = None, averages=None, heads=(), train_features: Features | None = None,
                dev_features: Features | None = None, progress: bool = False) -> ProbeResult:
    """Train a fresh probe (seeded) on `train`, report dev metrics after every epoch; the final epoch counts.

    Cached protocol: pass precomputed features (``extract_features``) or they are computed here once.
    Reference protocol: the backbone (train mode, dropout on, `heads` replaced) runs for every batch.
    Streaming protocol: the same in eval mode, and dev features are computed again for each evaluation.
    """
    config = config or ProbeConfig()
    start = time.time()
    streaming = config.protocol == "streaming"
    if dev_features is None and not streaming:
        dev_features = extract_features(model, task, dev, averages, heads, config.feature_batch_size,
                                        precision=config.precision)
    if config.protocol == "cached" and train_features is None:
        train_features = extract_features(model, task, train, averages, heads, config.feature_batch_size,
                                          precision=config.precision)
    level0 = config.levels == "embeddings"
    if level0:
        train_features = None if train_features is None else train_features.embeddings_only()
        dev_features = None if dev_features is None else dev_features.embeddings_only()
    torch.manual_seed(seed)
    device = model_device(model)  # the probe trains where the backbone runs; cached features stay on the CPU
    probe = make_probe(task, model, train.length, config.dropout, config.levels).to(device)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    generator = torch.Generator().manual_seed(seed)
    curve = []
    dtype = PROBE_DTYPES[config.probe_precision]
    train_buffer = (BatchBuffer(train_features.states, config.batch_size, dtype, device)
                    if config.protocol == "cached" else None)
    dev_buffer = None if streaming else BatchBuffer(dev_features.states, eval_rows(dev_features.states), dtype, device)
    for epoch in tqdm(range(1, config.epochs + 1), desc=f"probe {task.name} seed {seed}", disable=not progress,
                      leave=False):
        probe.train()
        order = torch.randperm(len(train), generator=generator)
        losses = []
        for s in range(0, len(train), config.batch_size):
            index = order[s: s + config.batch_size]
            if config.protocol == "cached":
                states, mask, labels = train_features.select(index, train_buffer)
            else:
                model.train(config.protocol == "reference")
                with (torch.no_grad(), _maybe_replaced(model, averages, heads),
                      backbone_precision(config.precision, device)):
                    live = features_of(task, train, hidden_states(model, train.model_inputs(index)).half(),
                                       index=index)  # on the model's device, as the probe
                model.eval()
                if level0:
                    live = live.embeddings_only()
                states, mask, labels = live.states, live.mask, live.labels
            with backbone_precision(config.probe_precision, device):
                logits = probe(states, mask)
            loss = _loss(task, logits, labels)  # in fp32 (``_loss``)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(probe.parameters(), config.max_grad_norm)
            optimizer.step()
            losses.append(loss.item())
        predictions = (predict_streaming(model, probe, task, dev, config, averages, heads) if streaming else
                       predict(probe, task, dev_features, dev, buffer=dev_buffer, precision=config.probe_precision))
        curve.append({"epoch": epoch, "train_loss": float(np.mean(losses)),
                      **compute_metrics(task, predictions, dev.labels.numpy())})
    final = {k: v for k, v in curve[-1].items() if k not in ("epoch", "train_loss")}
    statistics = (None if task.is_regression
                  else example_statistics(task, task.metric, predictions, dev.labels.numpy()))
    return ProbeResult(final, curve, time.time() - start, statistics)


def rank_heads_by_gates(model, task: Task, train: Encoded, averages, *, epochs: int = 1, seed: int = 42,
                        config: ProbeConfig | None = None, progress: bool = False) -> dict:
    """Train one gate per head jointly with a probe (backbone frozen, eval mode); every head attends with
    sigmoid(g) P + (1 - sigmoid(g)) renorm(C), g initialised to 0. Returns the heads sorted by final gate,
    ascending (the heads that lean most on their constant matrix first), and the gates."""
    config = config or ProbeConfig()
    info = describe(model)
    torch.manual_seed(seed)
    device = model_device(model)
    # the gates' gradients go back through the backbone: in fp16 they would need loss scaling, so fp16 runs in fp32
    precision = "fp32" if config.precision == "fp16" else config.precision
    gates = nn.Parameter(torch.zeros(info["layers"], info["heads"], device=device))
    probe = make_probe(task, model, train.length, config.dropout).to(device)
    optimizer = torch.optim.AdamW([{"params": list(probe.parameters())},
                                   {"params": [gates], "lr": config.gate_lr or config.lr}],
                                  lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:  # the backbone stays frozen: gradients reach only the gates and the probe
        p.requires_grad_(False)
    try:
        start = time.time()
        with replace_heads(model, averages, "all", gates=gates):
            for _ in range(epochs):
                probe.train()
                order = torch.randperm(len(train), generator=generator)
                for s in tqdm(range(0, len(train), config.batch_size), desc=f"rank heads {task.name}",
                              disable=not progress, leave=False):
                    index = order[s: s + config.batch_size]
                    with backbone_precision(precision, device):
                        states = hidden_states(model, train.model_inputs(index))
                    states = states.float()
                    labels, mask = train.labels[index].to(device), train.attention_mask[index].to(device)
                    if task.token_task:
                        states, labels, _, _ = labelled_rows(states, labels)
                        loss = _loss(task, probe(states), labels)
                    else:
                        loss = _loss(task, probe(states, mask), labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_([*probe.parameters(), gates], config.max_grad_norm)
                    optimizer.step()
    finally:
        for p in trainable:
            p.requires_grad_(True)
    final = gates.detach().cpu().clone()
    order = torch.argsort(final.flatten(), stable=True)
    ranking = [(int(i) // info["heads"], int(i) % info["heads"]) for i in order]
    return {"ranking": ranking, "gates": final.tolist(), "seconds": time.time() - start}


SWEEP_FRACTIONS = (0, 1 / 2, 7 / 8, 15 / 16, 1)  # the paper's sweep over the share of heads replaced


def replaced_counts(total_heads: int, fractions=SWEEP_FRACTIONS) -> list[int]:
    """Numbers of replaced heads for the sweep (BERT-base, 144 heads: 0, 72, 126, 135, 144)."""
    return sorted({int(round(f * total_heads)) for f in fractions})
