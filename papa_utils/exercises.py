"""The teaching notebook's exercise checks. Each runs the student's function against the reference in
``papa_utils.head_stats`` and returns a ``Check``: passed or not, with a message the notebook prints. A function
still raising ``NotImplementedError`` (as the exercises ship) is "not solved yet", and any other failure is
reported, never raised, so that the notebook runs to its end either way. Reference solutions live apart, in
``papa_utils.solutions``."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .head_stats import js_divergence, papa_substitute, row_entropy


@dataclass(frozen=True)
class Check:
    passed: bool
    message: str

    def __str__(self) -> str:
        return self.message


def _attempt(name: str, fn, *args):
    """(answer, None), or (None, the Check that says why there is no answer)."""
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, Check(False, f"{name}: not solved yet (write the function above, then run this cell again)")
    except Exception as e:  # a student's bug is reported, not raised
        return None, Check(False, f"{name}: your function raised {type(e).__name__}: {e}")


def _compare(name: str, got, expected: torch.Tensor, atol: float) -> Check:
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
        found = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return Check(False, f"{name}: not yet right: expected a tensor of shape {tuple(expected.shape)}, got {found}")
    diff = (got.float().cpu() - expected.float().cpu()).abs().nan_to_num(nan=float("inf")).max().item()
    if diff <= atol:
        return Check(True, f"{name}: correct")
    return Check(False, f"{name}: not yet right (largest difference from the reference {diff:.3g})")


def check_entropy(fn, attention: torch.Tensor) -> Check:
    """Exercise 1: the entropy of every row of `attention` [..., L, L], natural log, 0 log 0 = 0."""
    got, problem = _attempt("exercise 1", fn, attention)
    return problem or _compare("exercise 1", got, row_entropy(attention), 1e-5)


def check_substitute(fn, constants: torch.Tensor, token_mask: torch.Tensor) -> Check:
    """Exercise 2: renorm(C * m m^T) for constants [layers, heads, L, L] and a token mask [B, L]."""
    got, problem = _attempt("exercise 2", fn, constants, token_mask)
    return problem or _compare("exercise 2", got, papa_substitute(constants, token_mask), 1e-6)


def check_score(fn, attention: torch.Tensor, substitute: torch.Tensor, token_mask: torch.Tensor) -> Check:
    """Exercise 3: the mean Jensen-Shannon divergence over the real query rows of one head on one example."""
    got, problem = _attempt("exercise 3", fn, attention, substitute, token_mask)
    expected = js_divergence(attention, substitute)[token_mask.bool()].mean()
    if problem is None and not isinstance(got, torch.Tensor):
        try:  # a plain number is a fine answer
            got = torch.as_tensor(got, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            pass  # reported by _compare as the wrong kind of answer
    return problem or _compare("exercise 3", got, expected, 1e-5)


def check_prediction(fn, stats: dict, scores: torch.Tensor, n: int) -> Check:
    """Exercise 4: `fn(stats, n)` picks n distinct heads (layer, head) from the section-3 statistics alone. It
    passes when their mean input dependence (`scores` [layers, heads]) lies below that of the average head: the
    pick is better than chance at finding heads that do not depend on their input. The message also counts the
    picks among the n least input-dependent heads, against what a random pick gets on average."""
    picked, problem = _attempt("exercise 4", fn, stats, n)
    if problem:
        return problem
    layers, heads = scores.shape
    try:
        picked = sorted({(int(layer), int(head)) for layer, head in picked})
    except (TypeError, ValueError):
        return Check(False, "exercise 4: not yet right: return a list of (layer, head) pairs")
    if len(picked) != n or not all(0 <= layer < layers and 0 <= head < heads for layer, head in picked):
        return Check(False, f"exercise 4: not yet right: pick {n} distinct heads of {layers} layers x {heads} heads "
                            f"(got {len(picked)} distinct, in range or not)")
    mine = torch.stack([scores[layer, head] for layer, head in picked]).mean().item()
    average = scores.mean().item()
    order = torch.argsort(scores.flatten(), stable=True)[:n].tolist()
    hits = len(set(picked) & {(i // heads, i % heads) for i in order})
    detail = (f"their mean input dependence {mine:.4f} against {average:.4f} for the average head; {hits} of {n} "
              f"among the {n} least input-dependent (a random pick: {n * n / scores.numel():.1f} on average)")
    if mine < average:
        return Check(True, f"exercise 4: better than chance: {detail}")
    return Check(False, f"exercise 4: not yet better than chance: {detail}")
