"""Reference solutions to the teaching notebook's exercises (``papa_utils.teaching.exercises`` checks them; the notebook
ships its exercises unsolved). For teachers, and for the test that every check accepts a solution."""
from __future__ import annotations

import torch


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Exercise 1: -sum_j p_j log p_j over the last axis, with 0 log 0 = 0."""
    p = p.float()
    return -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1)


def substitute(C: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Exercise 2: renorm(C * m m^T) [B, layers, heads, L, L]."""
    pairs = (m[:, :, None] * m[:, None, :]).float()[:, None, None]
    masked = C[None].float() * pairs
    return masked / masked.sum(-1, keepdim=True).clamp_min(1e-12)


def score(a: torch.Tensor, s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Exercise 3: mean over real rows i of JS(a[i], s[i]), natural log."""
    a, s = a.float(), s.float()
    mid = (a + s) / 2

    def kl(p):
        return torch.where(p > 0, p * (p / mid).log(), torch.zeros_like(p)).sum(-1)

    return ((kl(a) + kl(s)) / 2)[m.bool()].mean()


def prediction(stats: dict, n: int) -> list[tuple[int, int]]:
    """Exercise 4, one hypothesis: the heads that put the most mass on separators look the same on every input."""
    mass = stats["mass_sep"]
    heads = mass.shape[1]
    return [(int(i) // heads, int(i) % heads) for i in torch.argsort(mass.flatten(), descending=True)[:n]]


def final_separator(layer: int, probs: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Exercise 5: every real token attends only to the last real token of its row (the final separator)."""
    length = token_mask.shape[-1]
    last = (token_mask * torch.arange(length, device=token_mask.device)).argmax(-1)  # [B]: the last real position
    target = torch.nn.functional.one_hot(last, length).to(probs.dtype)[:, None, None, :].expand_as(probs)
    return torch.where(token_mask.bool()[:, None, :, None], target, torch.zeros_like(probs))
