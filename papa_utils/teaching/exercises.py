"""The teaching notebook's exercise checks. Each runs the student's function against the reference in
``papa_utils.teaching.head_stats`` and returns a ``Check``: passed or not, with a message the notebook prints. A function
still raising ``NotImplementedError`` (as the exercises ship) is "not solved yet", and any other failure is
reported, never raised, so that the notebook runs to its end either way. Reference solutions live apart, in
``papa_utils.teaching.solutions``."""
from __future__ import annotations

import types
from dataclasses import dataclass

import torch

from .head_stats import hidden_state_change, row_entropy
from ..core.head_scores import js_divergence, papa_substitute
from .interventions import last_token, on_heads, papa_mix, uniform
from ..core.packing import as_batch, run_backbone
from ..core.replace import record_attention


@dataclass(frozen=True)
class Check:
    passed: bool
    message: str

    def __str__(self) -> str:
        return self.message


def _attempt(name: str, fn, *args, hidden: dict | None = None):
    """(answer, None), or (None, the Check that says why there is no answer). `hidden`: the notebook's names that
    `fn` was run without (``_without_data``)."""
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, Check(False, f"{name}: not solved yet (write the function above, then run this cell again)")
    except NameError as e:
        if hidden and e.name in hidden:
            return None, Check(False, f"{name}: your function reads {e.name!r} from the notebook: answer from its "
                                      f"arguments alone (the check hides the notebook's data, the scores and the "
                                      f"ranking among it)")
        return None, Check(False, f"{name}: your function raised NameError: {e}")
    except Exception as e:  # a student's bug is reported, not raised
        return None, Check(False, f"{name}: your function raised {type(e).__name__}: {e}")


def _compare(name: str, got, expected: torch.Tensor, atol: float) -> Check:
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
        found = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return Check(False, f"{name}: not yet right: expected a tensor of shape {tuple(expected.shape)}, got {found}")
    nan = int(torch.isnan(got.float()).sum())
    if nan:
        return Check(False, f"{name}: not yet right: your answer has {nan} NaN entr{'y' if nan == 1 else 'ies'} "
                            f"(0 * log 0 and 0 / 0 give NaN: keep them out with torch.where or a clamp)")
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


DATA = (torch.Tensor, list, tuple, dict, set)  # what a notebook's results are held in (arrays and tables below)


def _is_data(value) -> bool:
    """A notebook's result rather than a tool: a tensor, an array, a table or a container."""
    return isinstance(value, DATA) or type(value).__module__.split(".")[0] in ("numpy", "pandas") and hasattr(
        value, "shape")


def _without_data(fn):
    """`fn` run with the notebook's data left out of its globals: tensors, arrays, tables, lists, dicts (the scores
    and the ranking among them, once a later cell has printed them). Modules, functions and other tools stay, so
    a function the student calls still sees its own globals: the check catches an answer that reads the printed
    ranking, not every way around it."""
    if not isinstance(fn, types.FunctionType):
        return fn
    kept = {k: v for k, v in fn.__globals__.items()
            if (len(k) > 4 and k.startswith("__") and k.endswith("__")) or not _is_data(v)}  # IPython's _, __ hide
    hidden = types.FunctionType(fn.__code__, kept, fn.__name__, fn.__defaults__, fn.__closure__)
    hidden.__kwdefaults__, hidden.__qualname__ = fn.__kwdefaults__, fn.__qualname__
    hidden.__dict__.update(fn.__dict__)
    return hidden


def check_prediction(fn, stats: dict, scores: torch.Tensor, n: int) -> Check:
    """Exercise 4: `fn(stats, n)` picks n distinct heads (layer, head) from the section-3 statistics alone (the
    notebook asks before it computes any score). Input dependence falls with depth, so a pick from the lowest layer
    looks good whatever it knows: the pick passes only when its mean input dependence (`scores` [layers, heads])
    lies below that of a random pick from the same layers (each picked head against its layer's mean). The message
    also counts the picks among the n least input-dependent heads, against what a random pick gets on average.
    `fn` runs without the notebook's data (``_without_data``)."""
    picked, problem = _attempt("exercise 4", _without_data(fn), stats, n, hidden=getattr(fn, "__globals__", {}))
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
    same_layers = torch.stack([scores[layer].mean() for layer, _ in picked]).mean().item()
    order = torch.argsort(scores.flatten(), stable=True)[:n].tolist()
    hits = len(set(picked) & {(i // heads, i % heads) for i in order})
    detail = (f"their mean input dependence {mine:.4f} against {same_layers:.4f} for a random pick from the same "
              f"layers ({scores.mean().item():.4f} for the average head); {hits} of {n} among the {n} least "
              f"input-dependent (a random pick: {n * n / scores.numel():.1f} on average)")
    if mine < same_layers:
        return Check(True, f"exercise 4: better than a same-layer random pick: {detail}")
    return Check(False, f"exercise 4: not yet better than a same-layer random pick: {detail}")


def check_intervention(fn, model, batches, averages) -> Check:
    """Exercise 5: `fn(layer, probs, token_mask)`, a ``patch_attention`` function under which every real token
    attends only to the last real token of its row (the final separator, slot L - 1 of the PAPA layout). Checked
    on the probabilities of the first batch against ``interventions.last_token``; then its cost, the relative
    change of the last hidden states (``head_stats.hidden_state_change``) with every head patched, beside the cost
    of PAPA's average on every head."""
    batches = list(batches)
    first = as_batch(batches[0])
    with record_attention(model) as cache:
        run_backbone(model, first)
    probs = cache["blocks.0.attn.pattern"].float()
    mask = first.token_mask.to(probs.device)
    got, problem = _attempt("exercise 5", fn, 0, probs, mask)
    if problem:
        return problem
    check = _compare("exercise 5", got, last_token(probs, mask), 1e-6)
    if not check.passed:
        return check
    try:
        yours = hidden_state_change(model, fn, batches)
    except Exception as e:  # a student's bug is reported, not raised
        return Check(False, f"exercise 5: your function raised {type(e).__name__}: {e}")
    papa = hidden_state_change(model, papa_mix(model, averages), batches)
    uniform_cost = hidden_state_change(model, on_heads(uniform), batches)
    return Check(True, f"exercise 5: correct. With every head on the final separator the last hidden states move by "
                       f"{yours:.3f} (relative change); with PAPA's average on every head {papa:.3f}, with uniform "
                       f"attention {uniform_cost:.3f}")
