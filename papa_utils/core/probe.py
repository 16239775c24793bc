"""The probe trained on top of a frozen (possibly PAPA-modified) encoder, and the gate-based head ranking. What it
reads (the hidden states of real tokens, cached or streamed) is in ``features``.

Sentence tasks: per hidden-state level l (embeddings + every layer) v_l = sum_t w[l, t] m_t h_l[t] with w
[N+1, L] initialised to 1/L; concat the N+1 vectors, Linear((N+1)D -> D), tanh, dropout 0.1, Linear(D -> C).
Token tasks: per token, concat the N+1 hidden states, Linear((N+1)D -> D), tanh, Linear(D -> C).
Cross-entropy (MSE for regression); AdamW lr 2e-5 constant, weight decay 0, grad-norm clip 1.0, batch 16.

By default the backbone runs once in eval mode: its hidden states for every example are cached (fp16) and
every epoch and seed reuses them. ``protocol="reference"`` re-runs the backbone for every training batch
with dropout on, as the authors' code does. Backbone passes run over real tokens only (``passes="packed"``,
``papa_utils.core.packing``) or over the whole layout (``passes="padded"``, the reference); either way the probe sees
the real tokens only: features are ragged rows of real tokens with their example and slot.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..settings.choices import PRECISIONS
from .device import autocast_dtype, backbone_precision, model_device
from .layout import Encoded
from .metrics import compute_metrics, example_statistics
from .models import describe
from .features import (BatchBuffer, Features, Rows, batch_rows, extract_features, hidden_states,
                       maybe_replaced)
from .packing import backbone_batches, pack
from .replace import replace_heads
from ..settings.tasks import Task


PROTOCOLS = ("cached", "reference", "streaming")
# what cached features are converted to for the probe, by the precision of its products
PROBE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
LEVELS = ("all", "embeddings")
LR_SCHEDULES = ("constant", "linear")


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
    passes: str = "packed"  # backbone passes over real tokens only ("packed") or the whole layout ("padded")
    lr_schedule: str = "constant"  # the paper's; "linear": from `lr` down to 0 at the last step (a curve that
    # ends flat, so that the final epoch is read where the probe has converged rather than where it happens to be)

    def __post_init__(self):  # (`passes` is checked where batches are made: ``packing.pack``)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, LR_SCHEDULES))}, "
                             f"got {self.lr_schedule!r}")
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

    def forward(self, states: torch.Tensor, rows: "Rows") -> torch.Tensor:
        """states [M, N+1, D] of the real tokens of `rows.count` examples (``Rows``) -> logits [count, C]."""
        pooled = self.pooled(states, rows).flatten(1).to(autocast_dtype(self.slot_weights))  # bf16 in bf16 autocast
        return self.classifier(self.dropout(torch.tanh(self.pool(pooled))))

    def pooled(self, states: torch.Tensor, rows: "Rows") -> torch.Tensor:
        """v[e, l] = sum over the rows r of example e of w[l, slot_r] h_l[r], in fp32: [count, N+1, D].

        Per block of examples (``Rows.blocks``), one matrix product per level: a [examples, rows] matrix holding
        each row's slot weight in its example's line times the block's states [rows, D]. It reads the states once,
        where weighting every row first and summing them would write and read them again several times (the
        probe's training is bound by that memory traffic); the zeros off each line cost little in a small block."""
        levels = states.shape[1]
        weights = self.slot_weights[:, rows.slot]  # [N+1, M]: each row's weight at every level
        states = states.float().transpose(0, 1)  # [N+1, M, D]
        parts = []
        with torch.autocast(states.device.type, enabled=False):  # fp32 sums inside a bf16 probe too
            for first, end, start, stop in rows.blocks:
                mix = weights.new_zeros(levels, end - first, stop - start)
                mix[:, rows.owner[start:stop] - first, torch.arange(stop - start, device=weights.device)] = \
                    weights[:, start:stop]
                parts.append(torch.bmm(mix, states[:, start:stop]))
        return torch.cat(parts, 1).transpose(0, 1) if parts else states.new_zeros(0, levels, states.shape[-1])


class TokenProbe(nn.Module):
    def __init__(self, levels: int, hidden: int, labels: int):
        super().__init__()
        self.pool = nn.Linear(levels * hidden, hidden)
        self.classifier = nn.Linear(hidden, labels)

    def forward(self, states: torch.Tensor, rows: "Rows | None" = None) -> torch.Tensor:
        """states [M, N+1, D] of M tokens -> logits [M, C] (each token on its own)."""
        return self.classifier(torch.tanh(self.pool(states.to(autocast_dtype(self.pool.weight)).flatten(1))))


def make_probe(task: Task, model, length: int, dropout: float = 0.1, levels: str = "all") -> nn.Module:
    """The probe for `task` on `model`'s hidden states: every level (N+1), or only the embeddings (1)."""
    info = describe(model)
    count = info["layers"] + 1 if levels == "all" else 1
    if task.token_task:
        return TokenProbe(count, info["hidden"], task.num_labels)
    return SentenceProbe(count, length, info["hidden"], task.num_labels, dropout)


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
    rows = eval_rows(features.states)
    buffer = buffer or BatchBuffer(features.states, rows, PROBE_DTYPES[precision], device)
    logits = []
    with backbone_precision(precision, device):
        for start, stop, first, last in features.chunks(rows):
            states = buffer.slice(features.states, first, last)
            where = Rows.of(features.example[first:last] - start, features.slot[first:last], stop - start)
            logits.append(probe(states, where.to(device)).float().cpu())
    return _predictions(task, torch.cat(logits), data, features.example, features.slot)


def prediction_share(task: Task, predictions, labels) -> float | None:
    """The share of the predictions (on labelled tokens, for token tasks) that fall in the class predicted most
    often: 1.0 when a probe predicts one class for everything (a degenerate probe); None for regression."""
    if task.is_regression:
        return None
    predictions = np.asarray(predictions)
    if task.token_task:  # the labelled tokens, where a prediction was made
        predictions = predictions[(np.asarray(labels) != -100) & (predictions != -100)]
    if not predictions.size:
        return None
    return float(np.bincount(predictions.ravel().astype(np.int64)).max() / predictions.size)


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
    with maybe_replaced(model, averages, heads):
        for batch in backbone_batches(data, config.feature_batch_size, config.passes):
            with backbone_precision(config.precision, device):
                states = hidden_states(model, batch).half()
            live = batch_rows(task, data, batch, states[:, :1] if config.levels == "embeddings" else states)
            with backbone_precision(config.probe_precision, device):
                out = live.logits(probe).float().cpu()
            if task.token_task:
                examples.append(batch.examples[live.rows.owner.cpu()])
                slots.append(live.rows.slot.cpu())
                logits.append(out)
            else:  # back to example order below
                examples.append(batch.examples)
                logits.append(out)
    logits, examples = torch.cat(logits), torch.cat(examples)
    if task.token_task:
        return _predictions(task, logits, data, examples, torch.cat(slots))
    ordered = torch.empty_like(logits)
    ordered[examples] = logits
    return _predictions(task, ordered, data)


@dataclass
class ProbeResult:
    metrics: dict  # final epoch, task metrics in points
    curve: list = field(default_factory=list)  # per epoch: {"epoch", "train_loss", **metrics}
    seconds: float = 0.0
    # final epoch, per dev example: the counts its headline metric is made of (metrics.example_statistics),
    # for bootstraps over dev examples; None for regression tasks
    dev_statistics: np.ndarray | None = None
    # final epoch: the share of the dev predictions (tokens, for token tasks) that fall in the class predicted most
    # often; 1.0 for a probe that predicts one class whatever its input (``prediction_share``); None for regression
    prediction_share: float | None = None


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
                                        precision=config.precision, passes=config.passes)
    if config.protocol == "cached" and train_features is None:
        train_features = extract_features(model, task, train, averages, heads, config.feature_batch_size,
                                          precision=config.precision, passes=config.passes)
    level0 = config.levels == "embeddings"
    if level0:
        train_features = None if train_features is None else train_features.embeddings_only()
        dev_features = None if dev_features is None else dev_features.embeddings_only()
    torch.manual_seed(seed)
    device = model_device(model)  # the probe trains where the backbone runs; cached features stay on the CPU
    probe = make_probe(task, model, train.length, config.dropout, config.levels).to(device)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    steps = config.epochs * -(-len(train) // config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, (lambda step: 1.0) if config.lr_schedule == "constant" else (lambda step: 1.0 - step / steps))
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
                batch = train_features.select(index, train_buffer)
            else:
                model.train(config.protocol == "reference")
                live = pack(train, index, config.passes)
                with (torch.no_grad(), maybe_replaced(model, averages, heads),
                      backbone_precision(config.precision, device)):
                    states = hidden_states(model, live).half()  # on the model's device, as the probe
                model.eval()
                batch = batch_rows(task, train, live, states[:, :1] if level0 else states)
            with backbone_precision(config.probe_precision, device):
                logits = batch.logits(probe)
            loss = _loss(task, logits, batch.labels)  # in fp32 (``_loss``)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(probe.parameters(), config.max_grad_norm)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        predictions = (predict_streaming(model, probe, task, dev, config, averages, heads) if streaming else
                       predict(probe, task, dev_features, dev, buffer=dev_buffer, precision=config.probe_precision))
        curve.append({"epoch": epoch, "train_loss": float(np.mean(losses)),
                      **compute_metrics(task, predictions, dev.labels.numpy())})
    final = {k: v for k, v in curve[-1].items() if k not in ("epoch", "train_loss")}
    statistics = (None if task.is_regression
                  else example_statistics(task, task.metric, predictions, dev.labels.numpy()))
    return ProbeResult(final, curve, time.time() - start, statistics, prediction_share(task, predictions, dev.labels))


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
                    batch = pack(train, order[s: s + config.batch_size], config.passes)
                    with backbone_precision(precision, device):
                        states = hidden_states(model, batch)
                    live = batch_rows(task, train, batch, states.float())
                    loss = _loss(task, live.logits(probe), live.labels)
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


