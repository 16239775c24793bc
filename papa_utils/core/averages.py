"""Constant attention matrices: each head's average attention over many inputs in the PAPA layout.

For every layer l and head h, avg[l, h, i, j] = sum over examples of P[l, h, i, j] * m_i * m_j divided by
the number of examples in which both slots i and j hold real tokens (0 where that count is 0).
Rows are not normalised here; ``replace_heads`` renormalises per example.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .device import backbone_precision, model_device
from .layout import pair_mask
from .models import describe, model_name
from .packing import as_batch, run_backbone
from ..records.runs import atomic_path


class AveragesMismatchError(ValueError):
    """Averages used with a model or length they were not built for."""


def check_batch_length(constants_length: int, batch_length: int) -> None:
    """Refuse a batch whose length differs from the constant matrices' L (``replace_heads``, ``head_scores``)."""
    if batch_length != constants_length:
        raise AveragesMismatchError(
            f"constant matrices have length L={constants_length} but this batch has length {batch_length}; "
            f"encode the data with the same L the averages were built with")


@dataclass
class AttentionAverages:
    """Average attention [layers, heads, L, L] (fp32), the count matrix [L, L] and metadata."""

    averages: torch.Tensor
    counts: torch.Tensor
    meta: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return self.averages.shape[-1]

    def check_compatible(self, model, length: int | None = None) -> None:
        """Raise AveragesMismatchError unless these averages were built for `model` (and length L)."""
        info = describe(model)
        built_for = self.meta.get("model")
        if built_for is not None and built_for != info["name"]:
            raise AveragesMismatchError(
                f"these averages were built for model {built_for!r}, not {info['name']!r}; "
                f"compute them again with compute_average_attention on {info['name']!r}")
        if tuple(self.averages.shape[:2]) != (info["layers"], info["heads"]):
            raise AveragesMismatchError(
                f"averages have {tuple(self.averages.shape[:2])} (layers, heads) but {info['name']!r} has "
                f"({info['layers']}, {info['heads']})")
        if length is not None and length != self.length:
            raise AveragesMismatchError(
                f"averages were built with length L={self.length}, but the data use L={length}; "
                f"encode the data with L={self.length} or compute the averages again with L={length}")

    def save(self, path: str | Path) -> Path:
        """Write to a safetensors file atomically (temporary name, then rename)."""
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            save_file({"averages": self.averages.contiguous(), "counts": self.counts.contiguous()}, str(tmp),
                      metadata={"papa": json.dumps(self.meta)})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, model=None, length: int | None = None) -> "AttentionAverages":
        """Read averages; with `model` / `length`, refuse averages built for another model or L."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("papa", "{}"))
            result = cls(f.get_tensor("averages"), f.get_tensor("counts"), meta)
        if model is not None:
            result.check_compatible(model, length)
        elif length is not None and length != result.length:
            raise AveragesMismatchError(f"averages in {path} were built with L={result.length}, not L={length}")
        return result


class AverageAccumulator:
    """Streaming masked fp32 sums S[layers, heads, L, L] and counts Cnt[L, L]."""

    def __init__(self):
        self.sums: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self.examples = 0

    def add(self, attentions, token_mask: torch.Tensor, slots: torch.Tensor | None = None,
            length: int | None = None) -> None:
        """attentions: per layer [B, heads, W, W] probabilities; token_mask: [B, W] real tokens. For the whole
        layout W = L; for a packed batch (``papa_utils.core.packing``) position i holds slot slots[b, i] of a layout of
        `length` L, and each probability is added into its (slot_i, slot_j) cell of the L x L grid."""
        if slots is not None and length is None:
            raise ValueError("a packed batch's probabilities need the layout's length L to land in the L x L grid")
        pm = pair_mask(token_mask)  # [B, 1, W, W]
        stacked = torch.stack([a.detach().to(torch.float32) for a in attentions], dim=1)  # [B, N, H, W, W]
        if self.sums is None:
            n = length or token_mask.shape[1]
            self.sums = stacked.new_zeros(*stacked.shape[1:3], n, n)
            self.counts = stacked.new_zeros(n, n)
        if slots is None:
            self.sums += (stacked * pm[:, None]).sum(0)
            self.counts += pm[:, 0].sum(0)
        else:
            n = self.counts.shape[0]
            slots = slots.to(stacked.device)
            cell = (slots[:, :, None] * n + slots[:, None, :]).flatten()  # [B * W * W] cells of the grid
            weighted = (stacked * pm[:, None]).permute(1, 2, 0, 3, 4).reshape(-1, cell.numel())  # [N * H, B*W*W]
            self.sums.view(-1, n * n).index_add_(1, cell, weighted)
            self.counts.view(-1).index_add_(0, cell, pm.flatten())
        self.examples += token_mask.shape[0]

    def result(self, meta: dict) -> AttentionAverages:
        if self.sums is None:
            raise ValueError("no examples were seen; cannot average attention over an empty dataset")
        avg = torch.where(self.counts > 0, self.sums / self.counts.clamp_min(1), torch.zeros_like(self.sums))
        return AttentionAverages(avg.cpu(), self.counts.cpu(), {**meta, "examples": self.examples})


@torch.no_grad()
def compute_average_attention(model, batches, *, task: str | None = None, data_checksum: str | None = None,
                              progress: bool = True, precision: str = "fp32",
                              on_hidden_states=None) -> AttentionAverages:
    """Average post-softmax attention of a frozen model over `batches` (dicts with input_ids,
    attention_mask, optional token_type_ids, all of length L). The model runs in eval mode; with
    precision="bf16" under CPU autocast (the sums stay fp32).

    `batches` may also be packed (``papa_utils.core.packing.backbone_batches``): each probability then goes into the
    cell of its two slots, and the averages are the same as from the whole layout.

    With `on_hidden_states`, the same pass also returns every batch's hidden states: it is called, batch by
    batch in order, with the ``Batch`` and all N+1 levels stacked [B, N+1, W, D] (this is how the probe's
    baseline features come for free with the averages)."""
    was_training = model.training
    model.eval()
    acc = AverageAccumulator()
    device = model_device(model)
    length = None
    try:
        for batch in tqdm(batches, desc="average attention", disable=not progress, leave=False):
            batch = as_batch(batch)
            if length is not None and batch.length != length:
                raise ValueError(f"batches of one average must share one layout length L, got {length} and "
                                 f"{batch.length}")
            with backbone_precision(precision, device):
                out = run_backbone(model, batch, output_attentions=True,
                                   output_hidden_states=on_hidden_states is not None)
            if on_hidden_states is not None:
                on_hidden_states(batch, torch.stack(out.hidden_states, dim=1))
            length = batch.length
            acc.add(out.attentions, batch.token_mask.to(device), batch.slots if batch.packed else None, length)
    finally:
        model.train(was_training)
    return acc.result({"model": model_name(model), "task": task, "length": length,
                       "data_checksum": data_checksum, "precision": precision})
