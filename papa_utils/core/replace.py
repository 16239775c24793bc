"""Replace attention heads of a frozen encoder with constant matrices (``replace_heads``), or put any function in
at the named attention points (``patch_attention``) and record what they hold (``record_attention``). The hook
points, the constant mix and how each family is hooked are in ``hooks``.

Nesting has one meaning in every family: a model has one active state; a context entered inside another adds its
step to that state, after the steps already there, so the inner function is applied to what the outer one returns
(``replace_heads``'s constant mix counts as a step, and changes only the heads it lists), and recorders see the
result of every step. Leaving a context removes its step only. While any patch, recorder or nested step is active,
replaced layers take the explicit path (every head's probabilities formed), whose results are those of
``replace_heads(..., fast=False)``, and packed batches are refused.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .averages import AttentionAverages, check_batch_length
from .device import model_device
from .hooks import (LayerSpec, ReplacementState, active_state, added_step, attention_modules, installed, mix_heads,
                    pattern_name)
from .models import describe, model_name


def constant_tensor(model, averages) -> torch.Tensor:
    """Accept AttentionAverages (checked against the model) or a plain [layers, heads, L, L] tensor."""
    info = describe(model)
    if isinstance(averages, AttentionAverages):
        averages.check_compatible(model)
        averages = averages.averages
    if not isinstance(averages, torch.Tensor) or averages.dim() != 4 \
            or tuple(averages.shape[:2]) != (info["layers"], info["heads"]) or averages.shape[2] != averages.shape[3]:
        shape = tuple(averages.shape) if isinstance(averages, torch.Tensor) else type(averages).__name__
        raise ValueError(f"constant matrices must have shape [layers={info['layers']}, heads={info['heads']}, L, L] "
                         f"for {model_name(model)}, got {shape}")
    return averages


def head_list(heads, layers: int, n_heads: int) -> dict[int, list[int]]:
    """{layer: [head, ...]} from "all" or (layer, head) pairs, each checked against `layers` x `n_heads`."""
    if isinstance(heads, str):
        if heads != "all":
            raise ValueError(f"heads must be 'all' or a list of (layer, head) pairs, got {heads!r}")
        heads = [(l, h) for l in range(layers) for h in range(n_heads)]
    per_layer: dict[int, list[int]] = {}
    for item in heads:
        layer, head = (int(x) for x in item)
        if not (0 <= layer < layers and 0 <= head < n_heads):
            raise ValueError(f"head {(layer, head)} is out of range for {layers} layers x {n_heads} heads")
        per_layer.setdefault(layer, []).append(head)
    return per_layer


@contextmanager
def replace_heads(model, averages, heads="all", gates: torch.Tensor | None = None, fast: bool = True):
    """Inside this context, the listed heads of `model` attend with constant matrices.

    averages: ``AttentionAverages`` (its model and shape are checked) or a tensor [layers, heads, L, L];
    heads: "all" or an iterable of (layer, head). The inputs must have length L. Leaving restores the model.
    gates: optional [layers, heads] tensor (e.g. a trainable Parameter); then a listed head attends with
    sigmoid(gate) * its own probabilities + (1 - sigmoid(gate)) * its renormalised constant matrix.
    fast=False: the straightforward reference (every head's Q, K, scores and softmax computed, then the
    replaced ones overwritten); same results, slower; for checks and benchmarks.
    Inside another attention context (``patch_attention``, ``record_attention``) the constant mix is applied to what
    that context's steps return, on batches of the whole layout.
    """
    info = describe(model)
    constants = constant_tensor(model, averages)
    per_layer = head_list(heads, info["layers"], info["heads"])
    if gates is not None and tuple(gates.shape) != (info["layers"], info["heads"]):
        raise ValueError(f"gates must have shape [layers={info['layers']}, heads={info['heads']}], "
                         f"got {tuple(gates.shape)}")
    family, modules = attention_modules(model)
    device = model_device(model)
    specs = {layer: LayerSpec(info["heads"], hs, constants[layer], layer, gates, device)
             for layer, hs in per_layer.items()}
    active = active_state(model)
    if active is not None:  # nested: one more step of the active state, after the steps already there
        def mix(layer, probs, token_mask):  # only the listed heads change: what the outer steps made of the others stays
            spec = specs.get(layer)
            if spec is None:
                return probs
            check_batch_length(constants.shape[-1], probs.shape[-1])
            mixed = mix_heads(probs[:, spec.dynamic] if len(spec.dynamic) else None, spec, token_mask).to(probs.dtype)
            out = probs.clone()
            out[:, spec.replaced] = mixed[:, spec.replaced]
            return out
        with added_step(active.patches, mix):
            yield model
        return
    state = ReplacementState(specs, info["layers"], model.config._attn_implementation, fast, modules=modules)
    with installed(model, state, family, modules, length=constants.shape[-1]):
        yield model


@contextmanager
def patch_attention(model, fn):
    """Inside this context, every attention layer of `model` attends with what `fn(layer, probs, token_mask)`
    returns: `probs` are the layer's probabilities [batch, heads, L, L] as the model made them (after the softmax,
    before dropout; inside another context, what its steps made of them), `token_mask` the real tokens [batch, L];
    the return value takes their place (same shape), then dropout and the product with V run as usual. `fn` may
    also be a dict of named points, {"blocks.1.attn.pattern": fn, ...}: each function, with the same signature,
    patches its layer only (``hook_names``). One hook for any attention intervention, in every family
    ``replace_heads`` supports (``papa_utils.teaching.interventions`` has PAPA's constant mix and the usual ablations).
    Nested contexts apply the inner function to what the outer one returns. Leaving restores the model exactly.
    Every head's probabilities are computed (no fast path): for the pipeline's passes, ``replace_heads`` stays the
    fast way to put in constant matrices."""
    info = describe(model)
    family, modules = attention_modules(model)
    fn = _by_name(fn, info["layers"]) if isinstance(fn, dict) else fn
    active = active_state(model)
    if active is not None:
        with added_step(active.patches, fn):
            yield model
        return
    state = ReplacementState({}, info["layers"], model.config._attn_implementation, fast=False, patch=fn,
                             modules=modules)
    with installed(model, state, family, modules):
        yield model


@contextmanager
def record_attention(model):
    """Inside this context, every forward pass of `model` records what each layer attends with, in the dict it
    yields: ``blocks.{layer}.attn.pattern`` [batch, heads, L, L] (under ``replace_heads`` or ``patch_attention``,
    the probabilities after their steps: what the model actually used) and, in the registry family,
    ``blocks.{layer}.attn.scores`` (before the softmax, with the mask added). A later pass overwrites an earlier
    one's entries. Batches of the whole layout only: a packed batch is refused, since its positions are not its
    slots. Leaving restores the model exactly."""
    info = describe(model)
    family, modules = attention_modules(model)
    cache: dict[str, torch.Tensor] = {}
    active = active_state(model)
    if active is not None:
        with added_step(active.recorders, cache):
            yield cache
        return
    state = ReplacementState({}, info["layers"], model.config._attn_implementation, fast=False, modules=modules)
    state.recorders.append(cache)
    with installed(model, state, family, modules):
        yield cache


def _by_name(fns: dict, layers: int):
    """One patch function from {"blocks.{layer}.attn.pattern": fn}: each fn on its own layer."""
    names = {pattern_name(layer): layer for layer in range(layers)}
    unknown = [name for name in fns if name not in names]
    if unknown:
        raise ValueError(f"patch_attention: no attention point named {', '.join(map(repr, unknown))}; this model's are "
                         f"{pattern_name(0)} to {pattern_name(layers - 1)} (the scores cannot be patched)")
    by_layer = {names[name]: fn for name, fn in fns.items()}

    def fn(layer, probs, token_mask):
        return by_layer[layer](layer, probs, token_mask) if layer in by_layer else probs
    return fn


