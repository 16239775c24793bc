"""How input-dependent each head is: the distance of its attention on an input from its PAPA substitute
renorm(C * m m^T), the matrix that replaces it. ``head_scores`` gives the Jensen-Shannon divergence of each real
row (``input_dependence``, between 0 and log 2) and the squared distance of each real row (``variance``: the
spread of a head's rows around its average, the statistic of work that freezes the heads whose attention varies
least across inputs), means over real query rows in fp32; the rankings the partial sweep can replace heads in
come from them (``ranking_from_scores``) or from chance (``random_ranking``).
"""
from __future__ import annotations

import numpy as np
import torch

from .averages import AttentionAverages, check_batch_length
from .device import model_device
from .hooks import renormalise_rows
from .layout import pair_mask
from .packing import as_batch, at_slots, run_backbone


SCORES = ("input_dependence", "variance")


SCORE_DEFINITION = 1  # bump when the scores' definition changes: cached scores then count as stale


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence between the rows of p and q [..., L] (natural log: between 0 and log 2)."""
    p, q = p.to(torch.float32), q.to(torch.float32)
    m = (p + q) / 2
    kl_p = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(-1)
    kl_q = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(-1)
    return ((kl_p + kl_q) / 2).clamp_min(0)


def papa_substitute(constants: torch.Tensor, token_mask: torch.Tensor, slots: torch.Tensor | None = None) -> torch.Tensor:
    """What replaces each head on each example: renorm(C * m m^T), [B, layers, heads, L, L] from constants
    [layers, heads, L, L] and the token mask [B, L]. For a packed batch (``papa_utils.core.packing``), whose position i
    holds slot slots[b, i], the matrix is C[slot_i, slot_j]: [B, layers, heads, W, W]."""
    pm = pair_mask(token_mask)[:, :, None]  # [B, 1, 1, W, W]
    constants = constants.to(torch.float32)
    if slots is None:
        return renormalise_rows(constants[None] * pm)
    return renormalise_rows(at_slots(constants, slots) * pm)  # [B, N, H, W, W]


def row_mean(values: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over batch and rows of values [B, layers, heads, L] where rows [B, L] is true, and the row count."""
    w = rows.to(torch.float32)[:, None, None, :]
    return (values * w).sum((0, 3)), w.sum()


def stacked_attention(attentions) -> torch.Tensor:
    """Per-layer attention probabilities [B, heads, L, L] (a model's output) -> fp32 [B, layers, heads, L, L]."""
    if isinstance(attentions, torch.Tensor):
        return attentions.to(torch.float32)
    if attentions is None or any(a is None for a in attentions):
        raise ValueError("the model returned no attention probabilities: load it with attn_implementation='eager' "
                         "(papa_utils.load_model does) and call it with output_attentions=True")
    return torch.stack([a.detach().to(torch.float32) for a in attentions], dim=1)


def means_of(sums: dict) -> dict:
    return {name: (total / count.clamp_min(1)).cpu() for name, (total, count) in sums.items()}


def accumulate(sums: dict, batch: dict) -> None:
    for name, (total, count) in batch.items():
        old = sums.get(name)
        sums[name] = (total, count) if old is None else (old[0] + total, old[1] + count)


def score_attention(attentions, constants: torch.Tensor, token_mask: torch.Tensor,
                    slots: torch.Tensor | None = None) -> dict:
    """Sums and row counts of the input-dependence scores of one batch (see ``head_scores``; `slots` of a packed
    batch as in ``papa_substitute``)."""
    a = stacked_attention(attentions)
    s = papa_substitute(constants.to(a.device), token_mask, slots)
    real = token_mask.bool()
    return {"input_dependence": row_mean(js_divergence(a, s), real),
            "variance": row_mean(((a - s) ** 2).sum(-1), real)}


@torch.no_grad()
def head_scores(model, averages: AttentionAverages, batches) -> dict[str, torch.Tensor]:
    """How far each head's attention is from its PAPA substitute, over `batches`: ``input_dependence`` (mean
    Jensen-Shannon divergence of real rows, natural log) and ``variance`` (mean squared distance of real rows),
    each [layers, heads] fp32. The model runs in fp32 (no autocast) in eval mode; averages built for another
    model or L are refused (``AveragesMismatchError``). `batches`: padded dicts or ``Batch``es, packed or not
    (``papa_utils.core.packing``)."""
    was_training = model.training
    model.eval()
    device, sums = model_device(model), {}
    averages.check_compatible(model)
    constants = averages.averages.to(device, torch.float32)
    try:
        for batch in map(as_batch, batches):
            check_batch_length(averages.length, batch.length)
            out = run_backbone(model, batch, output_attentions=True)
            accumulate(sums, score_attention(out.attentions, constants, batch.token_mask.to(device),
                                              batch.slots if batch.packed else None))
    finally:
        model.train(was_training)
    if not sums:
        raise ValueError("no examples were given; cannot score heads over an empty dataset")
    return means_of(sums)


def input_dependence(model, averages: AttentionAverages, batches) -> torch.Tensor:
    """[layers, heads] fp32: the Jensen-Shannon divergence (natural log) between each head's attention row
    A(x)[i, :] and its PAPA substitute row renorm(C * m(x) m(x)^T)[i, :], averaged over every real query row i
    of every example in `batches` (each real row counts once). 0 for a head that always equals its substitute."""
    return head_scores(model, averages, batches)["input_dependence"]


def ranking_from_scores(scores: torch.Tensor) -> list[tuple[int, int]]:
    """(layer, head) pairs sorted by score, ascending (the least input-dependent head first; ties by index)."""
    heads = scores.shape[1]
    order = torch.argsort(scores.flatten(), stable=True)
    return [(int(i) // heads, int(i) % heads) for i in order]


def random_ranking(layers: int, heads: int, seed: int) -> list[tuple[int, int]]:
    """A random order of every (layer, head), fixed by `seed`."""
    order = np.random.RandomState(seed).permutation(layers * heads)
    return [(int(i) // heads, int(i) % heads) for i in order]
