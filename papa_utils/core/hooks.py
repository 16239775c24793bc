"""How PAPA hooks a frozen encoder's attention: the state a context installs, the constant mix, the named points.

Between the softmax and the multiplication by V, in a layer with replaced heads:
1. dynamic heads keep their usual probabilities (only their scores are computed),
2. replaced heads take their constant matrix C[layer, head] (shape [L, L]),
3. every head is multiplied by the example's pair mask m_i * m_j and each row is L1-renormalised
   (divided by max(row sum, 1e-12)), so a fully masked row stays zero,
4. attention dropout (train mode only), then the product with V, as usual.
In a packed pass (``papa_utils.core.packing``) position i of a row holds slot s_i, and a replaced head's matrix is
C[s_i, s_j], gathered per example, then masked and renormalised in the same way.
Layers without replaced heads run unchanged. When nobody asks for probabilities (no output_attentions,
no gates), replaced layers take a fast path with the same results: Q/K projections only for dynamic heads,
PyTorch's fused attention for them, and renorm(C * m_i m_j) @ V for replaced heads without forming the
per-example matrix.

Two mechanisms, one per architecture family, sharing ``mix_heads``:
- attention-function registry (BERT, RoBERTa, ELECTRA, XLM-R, ALBERT, DistilBERT): an implementation
  named "papa" is registered with transformers' ``AttentionInterface``; inside ``replace_heads`` the model's
  ``_attn_implementation`` is switched to it;
- attention-dropout hook (DeBERTa v1/v2, MPNet, which compute their softmax inline): a forward pre-hook on
  the attention-probability dropout module rewrites the probabilities it receives.

Named attention points, in TransformerLens's style: ``blocks.{layer}.attn.pattern`` is what a layer attends with
([batch, heads, L, L], after the softmax and any replacement, before dropout), ``blocks.{layer}.attn.scores`` the
scores before the softmax (the registry family only: the others compute them inline). ``patch_attention`` puts any
function in at the pattern points (``papa_utils.teaching.interventions``), ``record_attention`` keeps what they hold. The
layer of a call comes from a module-to-layer map (ALBERT, whose layers share one module, counts calls instead).
"""
from __future__ import annotations

import inspect
import sys
from contextlib import contextmanager

import torch
from torch import nn

from .averages import check_batch_length
from .device import autocast_dtype
from .layout import pair_mask
from .models import describe
from .packing import active_packing, at_slots


REGISTRY_ATTENTION = {"BertSelfAttention", "RobertaSelfAttention", "ElectraSelfAttention",
                      "XLMRobertaSelfAttention", "CamembertSelfAttention", "AlbertAttention",
                      "DistilBertSelfAttention"}


DROPOUT_HOOK_ATTENTION = {"DisentangledSelfAttention", "MPNetSelfAttention"}


# names of the query / key projections, computed only for dynamic heads inside replace_heads
QK_PROJECTIONS = {"BertSelfAttention": ("query", "key"), "RobertaSelfAttention": ("query", "key"),
                  "ElectraSelfAttention": ("query", "key"), "XLMRobertaSelfAttention": ("query", "key"),
                  "CamembertSelfAttention": ("query", "key"), "AlbertAttention": ("query", "key"),
                  "DistilBertSelfAttention": ("q_lin", "k_lin"), "MPNetSelfAttention": ("q", "k"),
                  "DisentangledSelfAttention": ("query_proj", "key_proj")}  # DeBERTa v1 has a fused in_proj


SUPPORTED = "BERT, RoBERTa, ELECTRA, XLM-R, ALBERT, DistilBERT (attention registry); DeBERTa v1/v2/v3, MPNet (hook)"


IMPLEMENTATION = "papa"


class UnsupportedModelError(TypeError):
    pass


def renormalise_rows(probs: torch.Tensor) -> torch.Tensor:
    """Divide each row by max(row sum, 1e-12): rows sum to 1, or stay all-zero."""
    return probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)


def mix_heads(dynamic: torch.Tensor | None, spec: "LayerSpec", token_mask: torch.Tensor,
              slots: torch.Tensor | None = None) -> torch.Tensor:
    """Attention probabilities [B, H, L, L] of one layer with some heads replaced (or gated).

    `dynamic`: probabilities of the heads in ``spec.dynamic`` ([B, len(spec.dynamic), L, L], ascending head
    order, so each head keeps its own index), or None when every head is replaced. With gates, every head is
    dynamic and a listed head attends with sigmoid(g) * P + (1 - sigmoid(g)) * renorm(C). `slots` [B, W]: the
    slot each position of a packed row holds (``LayerSpec.constants_at``); None for the whole layout.
    """
    batch, length = token_mask.shape
    dtype = dynamic.dtype if dynamic is not None else spec.constants.dtype
    pm = pair_mask(token_mask).to(dtype)
    constants = spec.constants_at(slots).to(dtype)
    if spec.gates is not None:
        gate = torch.sigmoid(spec.gates[spec.layer, spec.replaced]).to(dtype)[None, :, None, None]
        probs = dynamic.clone()
        probs[:, spec.replaced] = gate * dynamic[:, spec.replaced] + (1 - gate) * renormalise_rows(constants * pm)
    else:
        probs = torch.empty(batch, spec.heads, length, length, dtype=dtype, device=token_mask.device)
        if dynamic is not None:
            probs[:, spec.dynamic] = dynamic
        probs[:, spec.replaced] = constants
    return renormalise_rows(probs * pm)


class LayerSpec:
    """Which heads of one layer are replaced (or gated), and their constant matrices ([R, L, L])."""

    def __init__(self, heads: int, replaced: list[int], constants: torch.Tensor, layer: int = 0,
                 gates: torch.Tensor | None = None, device=None):
        self.heads, self.layer, self.gates = heads, layer, gates
        self.replaced = torch.tensor(sorted(replaced), dtype=torch.long, device=device)
        kept = [h for h in range(heads) if h not in set(replaced)]
        self.dynamic = (torch.arange(heads, device=device) if gates is not None
                        else torch.tensor(kept, dtype=torch.long, device=device))
        self.constants = constants.to(device)[self.replaced].to(torch.float32).contiguous()

    def constants_at(self, slots: torch.Tensor | None) -> torch.Tensor:
        """The replaced heads' matrices: [R, L, L] for the whole layout (slots None), or for a packed batch whose
        position i holds slot slots[b, i], C[slot_i, slot_j] per example: [B, R, W, W]."""
        if slots is None:
            return self.constants
        return at_slots(self.constants, slots)


class ReplacementState:
    """Per-model state while ``replace_heads``, ``patch_attention`` or ``record_attention`` is active: layer specs,
    the steps that nested contexts added (`patches`, each fn(layer, probs, token_mask), applied in order after the
    specs) and the caches that record the result (`recorders`), the current batch's token mask, the module-to-layer
    map, and a counter of attention calls in the current forward pass (the layer where modules are shared, as in
    ALBERT)."""

    def __init__(self, specs: dict[int, LayerSpec], layers: int, original: str = "eager", fast: bool = True,
                 patch=None, modules: list | None = None):
        self.specs, self.layers, self.original, self.fast = specs, layers, original, fast
        self.patches = [] if patch is None else [patch]
        self.recorders: list[dict] = []
        self.token_mask: torch.Tensor | None = None
        self.slots: torch.Tensor | None = None  # [B, W] in a packed pass (``papa_utils.core.packing``), else None
        self.calls = 0
        modules = modules or []
        self.layer_of = {id(m): i for i, m in enumerate(modules)} if len(modules) == layers else {}

    @property
    def patched(self) -> bool:
        """Whether every layer's probabilities must be formed: a patch or a recorder is active."""
        return bool(self.patches or self.recorders)

    def upcoming(self) -> LayerSpec | None:
        """Spec of the layer whose attention runs next (its projections run before its attention call); for
        modules shared between layers."""
        return self.specs.get(self.calls)

    def next_layer(self, module=None) -> int:
        """The layer `module` computes: from the module-to-layer map, else (shared modules) the call count."""
        counted, self.calls = self.calls, self.calls + 1
        layer = self.layer_of.get(id(module), counted) if module is not None else counted
        if counted >= self.layers:
            raise RuntimeError(f"more attention calls ({self.calls}) than layers ({self.layers}) in one forward pass")
        return layer


def _token_mask_from_call(model, args, kwargs) -> torch.Tensor:
    bound = inspect.signature(model.forward).bind_partial(*args, **kwargs).arguments
    mask = bound.get("attention_mask")
    reference = bound.get("input_ids")
    if reference is None:
        reference = bound.get("inputs_embeds")[..., 0]
    if mask is None:
        return torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
    if mask.dim() != 2:
        raise ValueError(f"replace_heads needs a 2-D attention_mask [batch, L] (got shape {tuple(mask.shape)})")
    return mask


def papa_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The "papa" implementation for transformers' attention registry (BERT-like families).

    Probabilities are built only when asked for (output_attentions) or when gates mix them; otherwise
    dynamic heads go through PyTorch's fused attention and replaced heads are their masked, renormalised
    constant matrix times V (no scores, no softmax).
    """
    state: ReplacementState | None = getattr(module, "_papa_state", None)
    if state is not None and state.patched:
        return _patched_attention(module, query, key, value, attention_mask, scaling, dropout, state)
    spec = None
    if state is not None:
        spec = state.specs.get(state.next_layer(module))
    if spec is None:  # no replaced head here: run the original attention, unchanged
        return _original_attention(module, state)(module, query, key, value, attention_mask, scaling=scaling,
                                                  dropout=dropout, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    if state.fast and spec.gates is None and not kwargs.get("output_attentions"):
        return _fast_attention(module, query, key, value, attention_mask, scaling, dropout, spec, state)
    dynamic = None
    if not state.fast:  # straightforward reference: every head's probabilities, then overwrite
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            scores = scores + attention_mask
        dynamic = nn.functional.softmax(scores, dim=-1)[:, spec.dynamic] if len(spec.dynamic) else None
    elif len(spec.dynamic):
        scores = torch.matmul(query[:, spec.dynamic], key[:, spec.dynamic].transpose(2, 3)) * scaling
        if attention_mask is not None:
            scores = scores + attention_mask
        dynamic = nn.functional.softmax(scores, dim=-1)
    probs = mix_heads(dynamic, spec, state.token_mask, state.slots)
    probs = probs.to(value.dtype)
    dropped = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(dropped, value).transpose(1, 2).contiguous()
    return out, probs


def _patched_attention(module, query, key, value, attention_mask, scaling, dropout, state):
    """A patched or recorded layer in the registry family: every head's probabilities, as the eager attention
    computes them, then the state's steps (``_patched``), then dropout and V."""
    layer = state.next_layer(module)
    scores = torch.matmul(query, key.transpose(2, 3)) * (query.size(-1) ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = _patched(state, layer, nn.functional.softmax(scores, dim=-1), scores).to(value.dtype)
    dropped = nn.functional.dropout(probs, p=dropout, training=module.training)
    return torch.matmul(dropped, value).transpose(1, 2).contiguous(), probs


def _patched(state, layer: int, probs: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
    """What a layer attends with under the state's steps: its own probabilities, then the replaced heads' constant
    mix (the state's specs), then each patch in the order the contexts were entered; every recorder keeps the
    result at ``blocks.{layer}.attn.pattern`` (and the scores, where the family has them)."""
    out = probs
    spec = state.specs.get(layer)
    if spec is not None:
        out = mix_heads(out[:, spec.dynamic] if len(spec.dynamic) else None, spec, state.token_mask,
                        state.slots).to(probs.dtype)
    for fn in state.patches:
        new = fn(layer, out, state.token_mask)
        if not isinstance(new, torch.Tensor) or new.shape != probs.shape:
            found = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
            raise ValueError(f"patch_attention: the function must return attention probabilities of the shape it "
                             f"was given, [batch, heads, L, L] = {tuple(probs.shape)}, got {found} for layer {layer}")
        if torch.isnan(new).any():
            raise ValueError(f"patch_attention: the function returned NaN probabilities for layer {layer}")
        out = new
    for cache in state.recorders:
        cache[pattern_name(layer)] = out.detach()
        if scores is not None:
            cache[scores_name(layer)] = scores.detach()
    return out


def pattern_name(layer: int) -> str:
    """The hook point of what layer `layer` attends with ([batch, heads, L, L])."""
    return f"blocks.{layer}.attn.pattern"


def scores_name(layer: int) -> str:
    """The hook point of layer `layer`'s scores before the softmax (registry family)."""
    return f"blocks.{layer}.attn.scores"


def hook_names(model) -> list[str]:
    """Every named attention point of `model`: a pattern per layer, and its scores where the family exposes them
    (the registry family; DeBERTa and MPNet compute them inline)."""
    info = describe(model)
    family, _ = attention_modules(model)
    return [name for layer in range(info["layers"])
            for name in (pattern_name(layer),) + ((scores_name(layer),) if family == "registry" else ())]


def _original_attention(module, state):
    original = state.original if state is not None else "eager"
    if original in (None, "eager", IMPLEMENTATION):
        return getattr(sys.modules[type(module).__module__], "eager_attention_forward")
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[original]


def _fast_attention(module, query, key, value, attention_mask, scaling, dropout, spec, state):
    """Outputs [B, L, H, d] of a layer with replaced heads, without building dynamic probabilities."""
    token_mask = state.token_mask
    batch, heads, length, _ = value.shape
    p = dropout if module.training else 0.0
    out = value.new_empty(batch, heads, length, value.shape[-1])
    m = token_mask.to(value.dtype)
    if len(spec.dynamic):
        mask = attention_mask
        if mask is not None and mask.dim() == 4 and mask.shape[1] == heads > 1:  # per-head bias (MPNet)
            mask = mask[:, spec.dynamic]
        if mask is not None and mask.dtype != torch.bool:
            mask = mask.to(query.dtype)
        dyn = nn.functional.scaled_dot_product_attention(query[:, spec.dynamic], key[:, spec.dynamic],
                                                         value[:, spec.dynamic], attn_mask=mask, dropout_p=p,
                                                         scale=scaling)
        out[:, spec.dynamic] = dyn * m[:, None, :, None]  # rows of padded queries are zero, as in mix_heads
    out[:, spec.replaced] = constant_times_value(spec.constants_at(state.slots).to(value.dtype),
                                                 value[:, spec.replaced], token_mask, dropout=p)
    return out.transpose(1, 2).contiguous(), None


def _mpnet_fast_forward(module: nn.Module, state: ReplacementState, layer: int):
    """A forward for one ``MPNetSelfAttention`` while ``replace_heads`` is active: layers with replaced heads
    take the fast path of the registry family (MPNet computes attention inline, so its probabilities are
    otherwise only reachable through the dropout hook). Training mode, gates and output_attentions fall back to
    the module's own forward, where the dropout hook mixes the probabilities."""
    original = module.forward

    def forward(hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs):
        spec = state.specs.get(layer)
        if spec is None or spec.gates is not None or output_attentions or module.training or state.patched:
            return original(hidden_states, attention_mask, position_bias, output_attentions, **kwargs)
        state.next_layer(module)
        shape = (*hidden_states.shape[:-1], -1, module.attention_head_size)
        q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (module.q, module.k, module.v))
        bias = attention_mask
        if position_bias is not None:
            bias = position_bias if bias is None else position_bias + bias
        out, _ = _fast_attention(module, q, k, v, bias, module.attention_head_size ** -0.5, 0.0, spec, state)
        return (module.o(out.reshape(*hidden_states.shape[:-1], module.all_head_size)),)

    return forward


def constant_times_value(constants: torch.Tensor, value: torch.Tensor, token_mask: torch.Tensor,
                         dropout: float = 0.0) -> torch.Tensor:
    """renorm(C * m_i m_j) @ V for constants C [R, L, L] and values [B, R, L, d], without forming the
    per-example [B, R, L, L] matrix: since the pair mask factorises, the numerator is m_i (C @ (m V)) and
    the row sums are m_i (C @ m). With dropout (train mode), or constants gathered per example [B, R, W, W]
    (a packed pass), the probabilities are built explicitly."""
    if dropout > 0 or constants.dim() == 4:
        probs = renormalise_rows((constants if constants.dim() == 4 else constants[None])
                                 * pair_mask(token_mask).to(value.dtype))
        return torch.matmul(nn.functional.dropout(probs, p=dropout) if dropout > 0 else probs, value)
    batch, replaced, length, _ = value.shape
    m = token_mask.to(value.dtype)
    mq = m[:, None, :, None]  # [B, 1, L, 1]
    # einsum runs this as one [R] batch of (L x L) @ (L x B*d) products; matmul's broadcasting over B was
    # 2x slower at L = 128
    numerator = torch.einsum("rij,brjd->brid", constants, value * mq)  # [B, R, L, d]
    row_sums = (constants.reshape(replaced * length, length) @ m.t()).reshape(replaced, length, batch)
    row_sums = row_sums.permute(2, 0, 1).unsqueeze(-1)  # [B, R, L, 1]
    return numerator * (mq / (row_sums * mq).clamp_min(1e-12))


class DynamicHeadsProjection(nn.Module):
    """Stands in for a query or key projection inside ``replace_heads``: computes only the columns of the
    dynamic heads of the layer about to run (zeros for replaced heads, whose scores are never used)."""

    def __init__(self, linear: nn.Linear, head_dim: int, state: ReplacementState, layer: int | None = None):
        super().__init__()
        self.linear, self.head_dim, self.state, self.layer = linear, head_dim, state, layer
        self._slices: dict[int, tuple] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.state.upcoming() if self.layer is None else self.state.specs.get(self.layer)
        if spec is None or spec.gates is not None or getattr(self.state, "patched", False):
            return self.linear(x)
        shape = (*x.shape[:-1], self.linear.out_features)
        if not len(spec.dynamic):  # never read by the fast path: a zero-stride view, nothing allocated
            return x.new_zeros((), dtype=autocast_dtype(x)).expand(shape)
        if spec.layer not in self._slices:
            cols = (spec.dynamic[:, None] * self.head_dim + torch.arange(self.head_dim, device=x.device)).flatten()
            bias = None if self.linear.bias is None else self.linear.bias[cols]
            self._slices[spec.layer] = (cols, self.linear.weight[cols], bias)
        cols, weight, bias = self._slices[spec.layer]
        part = nn.functional.linear(x, weight, bias)
        out = part.new_zeros(shape)
        out[..., cols] = part
        return out


def _dropout_pre_hook(state: ReplacementState, module: nn.Module):
    def hook(dropout_module, args):
        if state.patched:  # patches or recorders: the probabilities of every head, as the layer made them
            layer = state.next_layer(module)
            return (_patched(state, layer, args[0]).to(args[0].dtype),)
        spec = state.specs.get(state.next_layer(module))
        if spec is None:
            return None
        (probs,) = args
        return (mix_heads(probs[:, spec.dynamic] if len(spec.dynamic) else None, spec, state.token_mask,
                          state.slots).to(probs.dtype),)
    return hook


def _register_implementation() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(IMPLEMENTATION, papa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, eager_mask)


def attention_modules(model) -> tuple[str, list[nn.Module]]:
    """The family ('registry' or 'dropout_hook') and the self-attention modules of a model, in layer order."""
    names = {type(m).__name__ for m in model.modules()}
    found = [m for m in model.modules() if type(m).__name__ in REGISTRY_ATTENTION]
    if found:
        return "registry", found
    found = [m for m in model.modules() if type(m).__name__ in DROPOUT_HOOK_ATTENTION]
    if found:
        for m in found:
            if getattr(m, "head_weights_proj", None) is not None:
                raise UnsupportedModelError("DeBERTa with talking heads (head_weights_proj) is not supported")
        return "dropout_hook", found
    raise UnsupportedModelError(
        f"replace_heads does not support model type {model.config.model_type!r} (no known self-attention "
        f"module among {sorted(n for n in names if 'Attention' in n) or 'its modules'}). Supported: {SUPPORTED}.")


def active_state(model) -> ReplacementState | None:
    """The state of the attention context active on `model` (its encoder), or None."""
    return getattr(getattr(model, "base_model", model), "__dict__", {}).get("_papa_active")


@contextmanager
def added_step(steps: list, step):
    """`step` in `steps` for the block, then out again (the one entered, wherever it is)."""
    steps.append(step)
    try:
        yield
    finally:
        for i in range(len(steps) - 1, -1, -1):
            if steps[i] is step:
                del steps[i]
                break


@contextmanager
def installed(model, state: ReplacementState, family: str, modules: list, length: int | None = None):
    """Install `state` in `model` for the block: the batch's token mask (and packed slots) captured before every
    forward pass, the attention of each layer routed through it (the "papa" implementation, or the dropout hook);
    with `state.fast`, dynamic-head projections and MPNet's fast forward. `length`: the L the inputs must have.
    Leaving restores everything it changed."""
    info = describe(model)
    previous = model.config._attn_implementation

    def capture(mod, args, kwargs):
        state.token_mask = _token_mask_from_call(mod, args, kwargs)
        packing = active_packing(mod)
        state.calls = 0
        state.slots = None if packing is None else packing[0]
        if length is not None:  # a packed row is shorter than L; the layout it was packed from must have L
            check_batch_length(length, state.token_mask.shape[1] if packing is None else packing[1])
        if state.patched and packing is not None:
            raise ValueError("patch_attention, record_attention and attention contexts nested in one another run "
                             "on batches of the whole layout (a function sees positions, and a packed row's "
                             "positions are not its slots): give them padded batches, "
                             "backbone_batches(data, size, 'padded')")

    base = getattr(model, "base_model", model)  # the encoder itself, also inside a task-head wrapper
    handles = [base.register_forward_pre_hook(capture, with_kwargs=True)]
    base.__dict__["_papa_active"] = state  # contexts entered inside this one add their steps to it
    swapped = []  # (module, attribute, original projection)
    # what each attention module's instance dict held under the names this context sets (e.g. a forward that
    # accelerate or another tool installed): put back exactly that when leaving
    saved = [(m, {name: m.__dict__[name] for name in ("forward", "_papa_state") if name in m.__dict__})
             for m in modules]
    try:
        for m in modules if state.fast else []:
            for name in QK_PROJECTIONS.get(type(m).__name__, ()):
                linear = getattr(m, name, None)
                if not isinstance(linear, nn.Linear):
                    continue
                head_dim = linear.out_features // info["heads"]
                swapped.append((m, name, linear))
                setattr(m, name, DynamicHeadsProjection(linear, head_dim, state, state.layer_of.get(id(m))))
        if family == "registry":
            _register_implementation()
            for m in modules:
                m._papa_state = state
            model.config._attn_implementation = IMPLEMENTATION
        else:
            handles += [m.dropout.register_forward_pre_hook(_dropout_pre_hook(state, m)) for m in modules]
            for m in modules if state.fast else []:
                if type(m).__name__ == "MPNetSelfAttention":
                    m.forward = _mpnet_fast_forward(m, state, state.layer_of[id(m)])
        yield
    finally:
        for m, name, linear in swapped:
            setattr(m, name, linear)
        for h in handles:
            h.remove()
        for m, before in saved:
            for name in ("forward", "_papa_state"):
                m.__dict__.pop(name, None)
            m.__dict__.update(before)
        model.config._attn_implementation = previous
        base.__dict__.pop("_papa_active", None)
