"""Attention interventions for ``replace.patch_attention``: each is a function fn(layer, probs, token_mask) that
returns the probabilities a layer attends with. PAPA's constant mix is one (``papa_mix``); the usual ablations are
patterns applied to chosen heads (``on_heads``): zero, the batch mean, uniform over the real keys, the previous
token, the first token ([CLS] in the PAPA layout) and the token itself.

A pattern maps probs [batch, heads, L, L] and the real-token mask [batch, L] to probabilities of the same shape.
Every pattern but ``zero`` gives each real query row a distribution over real keys; rows of padded queries are 0,
as in the model's own masked attention."""
from __future__ import annotations

import torch

from ..core.averages import AttentionAverages
from ..core.layout import pair_mask
from ..core.hooks import LayerSpec, mix_heads, renormalise_rows
from ..core.replace import constant_tensor, head_list


def zero(probs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """No attention at all: the head adds nothing to the layer's output."""
    return torch.zeros_like(probs)


def batch_mean(probs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Each head's mean over the examples of the batch, each entry over the examples where both its slots hold a
    real token (as PAPA's averages, ``averages``), then restricted to each example's real pairs and renormalised: a
    constant matrix made from this batch alone (PAPA averages many inputs instead)."""
    pairs = pair_mask(token_mask).to(probs.dtype)  # [B, 1, L, L]
    mean = (probs * pairs).sum(0, keepdim=True) / pairs.sum(0, keepdim=True).clamp_min(1)
    return renormalise_rows(mean * pairs)


def uniform(probs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Every real token attends equally to every real token."""
    return renormalise_rows(pair_mask(token_mask).to(probs.dtype).expand_as(probs).clone())


def _one_key(probs: torch.Tensor, token_mask: torch.Tensor, key_of: torch.Tensor) -> torch.Tensor:
    """All attention of real row i on key key_of[b, i] ([batch, L] positions)."""
    one = torch.zeros(token_mask.shape + token_mask.shape[-1:], dtype=probs.dtype, device=probs.device)
    one.scatter_(-1, key_of.unsqueeze(-1), 1.0)
    return (one * token_mask[..., None].to(probs.dtype))[:, None].expand_as(probs).clone()


def previous_token(probs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Every real token attends to the real token before it (padding skipped); the first attends to itself."""
    length = token_mask.shape[-1]
    positions = torch.arange(length, device=token_mask.device).expand_as(token_mask)
    real = token_mask.bool()
    # the latest real position strictly before i: a running maximum over real positions, shifted by one
    last_real = torch.where(real, positions, torch.full_like(positions, -1)).cummax(-1).values
    before = torch.cat([torch.full_like(last_real[:, :1], -1), last_real[:, :-1]], dim=-1)
    return _one_key(probs, token_mask, torch.where(before >= 0, before, positions))


def first_token(probs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Every real token attends to position 0 ([CLS] in the PAPA layout)."""
    return _one_key(probs, token_mask, torch.zeros_like(token_mask, dtype=torch.long))


def last_token(probs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Every real token attends to the last real token of its row (the final separator, slot L - 1 of the PAPA
    layout)."""
    positions = torch.arange(token_mask.shape[-1], device=token_mask.device).expand_as(token_mask)
    last = torch.where(token_mask.bool(), positions, torch.zeros_like(positions)).max(-1, keepdim=True).values
    return _one_key(probs, token_mask, last.expand_as(token_mask))


def self_token(probs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Every real token attends to itself."""
    positions = torch.arange(token_mask.shape[-1], device=token_mask.device).expand_as(token_mask)
    return _one_key(probs, token_mask, positions)


PATTERNS = {"zero": zero, "batch mean": batch_mean, "uniform": uniform, "previous token": previous_token,
            "first token": first_token, "self": self_token}


def on_heads(pattern, heads="all"):
    """A ``patch_attention`` function: the listed heads ("all" or (layer, head) pairs) attend with
    `pattern(probs, token_mask)`, every other head with its own probabilities."""
    def fn(layer: int, probs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        n = probs.shape[1]
        chosen = list(range(n)) if heads == "all" else sorted({int(h) for lay, h in heads if int(lay) == layer})
        if any(h >= n for h in chosen):
            raise ValueError(f"head {max(chosen)} of layer {layer} is out of range: the layer has {n} heads")
        if not chosen:
            return probs
        out = probs.clone()
        out[:, chosen] = pattern(probs, token_mask)[:, chosen]
        return out
    return fn


def papa_mix(model, averages: AttentionAverages | torch.Tensor, heads="all"):
    """A ``patch_attention`` function for PAPA itself: the listed heads attend with their constant matrices,
    masked to each example's real pairs and renormalised (``hooks.mix_heads``, as ``replace_heads`` does), on
    inputs of the whole PAPA layout (length L)."""
    constants = constant_tensor(model, averages)
    per_layer = head_list(heads, constants.shape[0], constants.shape[1])

    def fn(layer: int, probs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        if layer not in per_layer:
            return probs
        if probs.shape[-1] != constants.shape[-1]:
            raise ValueError(f"papa_mix needs inputs of the whole layout, L = {constants.shape[-1]}, got rows of "
                             f"{probs.shape[-1]} (a packed pass: use padded batches)")
        spec = LayerSpec(probs.shape[1], per_layer[layer], constants[layer], layer, device=probs.device)
        dynamic = probs[:, spec.dynamic] if len(spec.dynamic) else None
        return mix_heads(dynamic, spec, token_mask).to(probs.dtype)
    return fn
