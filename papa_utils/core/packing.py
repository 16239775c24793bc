"""Backbone passes over real tokens only ("packed"), equal to passes over the whole PAPA layout ("padded").

In the PAPA layout every example fills all L slots, most of them padding. A packed pass gathers each example's
real slots, in slot order, into a row as long as the longest example of its batch (examples are batched by
real length), and runs the model on that. Every position keeps the slot it came from:

- absolute positions: the slot index (BERT, ELECTRA, ALBERT, DistilBERT, DeBERTa's optional absolute
  embeddings) passed as ``position_ids``; RoBERTa, XLM-R and MPNet count real tokens themselves, which gives
  the same ids in both passes;
- relative positions: MPNet's attention bias and DeBERTa's relative positions are computed from slot distances
  (and DeBERTa v1's attention span from L), exactly as the padded pass computes them;
- replaced heads (``replace_heads``) attend with C[slot_i, slot_j], masked to the real keys and renormalised;
- attention averages accumulate back into the L x L slot grid.

Padding never reaches a real token in either pass (its keys are masked), so the hidden states of every real
token are the same up to the order of floating-point sums. A family without this proof in the tests is refused.

``Batch`` is what every backbone pass iterates over; ``backbone_batches`` makes them, ``run_backbone`` runs one.
"""
from __future__ import annotations

import sys
import weakref
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch

from ..settings.choices import check_passes
from .device import inputs_on, model_device

# model types whose packed pass is proven equal to the padded pass (tests/test_packing.py)
PACKED_MODEL_TYPES = ("bert", "roberta", "electra", "xlm-roberta", "albert", "distilbert", "deberta", "deberta-v2",
                      "mpnet")
# families whose embeddings number real tokens themselves (padding_idx + 1 + rank among real tokens): the same
# ids in a packed row, where real tokens keep their order
COUNTED_POSITIONS = ("roberta", "xlm-roberta", "mpnet")


class PackingUnsupportedError(TypeError):
    pass


@dataclass
class Batch:
    """Model inputs of some examples of an ``Encoded``, and the PAPA slot each position holds.

    inputs: input_ids, attention_mask (and token_type_ids), [B, W]; slots: [B, W], the slot of each position
    (padded: 0..L-1; packed: each example's real slots in order, then 0 on the positions that pad the row);
    examples: [B], their indices in the ``Encoded``; length: the layout's L; packed: whether the rows hold real
    tokens only (else the whole layout, slots 0..L-1)."""

    inputs: dict
    slots: torch.Tensor
    examples: torch.Tensor
    length: int
    packed: bool

    @property
    def token_mask(self) -> torch.Tensor:
        return self.inputs["attention_mask"]

    def __len__(self) -> int:
        return len(self.examples)


def pack(data, index, passes: str = "packed") -> Batch:
    """The examples data[index] as one batch: their real slots only (`passes` "packed") or the whole layout
    ("padded"). Every backbone pass of the package goes through here, so this is where a bad choice stops."""
    check_passes(passes)
    index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
    length = data.length
    inputs = data.model_inputs(index)
    if passes == "padded":
        slots = torch.arange(length).expand(len(index), length)
        return Batch(inputs, slots, index, length, False)
    mask = inputs["attention_mask"].bool()
    counts = mask.sum(1)
    width = max(1, int(counts.max())) if len(index) else 1
    # real slots first, each group in slot order (a stable sort of "is padding")
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :width]
    real = torch.arange(width)[None, :] < counts[:, None]
    slots = torch.where(real, order, torch.zeros_like(order))
    packed_inputs = {}
    for name, values in inputs.items():
        taken = values.gather(1, order)
        fill = data.pad_id if name == "input_ids" else 0
        packed_inputs[name] = torch.where(real, taken, torch.full_like(taken, fill))
    return Batch(packed_inputs, slots, index, length, True)


def backbone_batches(data, batch_size: int = 32, passes: str = "packed"):
    """Batches of `batch_size` examples covering `data` once. Padded: in order. Packed: sorted by real length
    (longest first), so that each batch pads its rows only up to its own longest example."""
    n = len(data)
    if passes == "padded":
        order = torch.arange(n)
    else:
        order = torch.sort(data.attention_mask.sum(1), descending=True, stable=True).indices
    for start in range(0, n, batch_size):
        yield pack(data, order[start: start + batch_size], passes)


def as_batch(item) -> Batch:
    """A ``Batch`` as is; a dict of padded model inputs (``Encoded.batches``) as a padded ``Batch``."""
    if isinstance(item, Batch):
        return item
    ids = item["input_ids"]
    length = ids.shape[1]
    return Batch({k: v for k, v in item.items() if k != "labels"}, torch.arange(length).expand(ids.shape[0], length),
                 torch.arange(ids.shape[0]), length, False)


# the slots and layout length of the packed batch each model is running on (read by ``replace_heads``)
_ACTIVE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def active_packing(model) -> tuple[torch.Tensor, int] | None:
    """([B, W] slots, L) of the packed batch `model` (its encoder) is running on now, or None (a padded pass)."""
    return _ACTIVE.get(getattr(model, "base_model", model))


def check_packable(model) -> None:
    """Refuse a model whose packed pass is not proven equal to its padded pass."""
    config = model.config
    kind = config.model_type
    if kind not in PACKED_MODEL_TYPES:
        raise PackingUnsupportedError(
            f"packed passes are not proven for model type {kind!r} (proven: {', '.join(PACKED_MODEL_TYPES)}); "
            f"run it with padded passes: passes='padded' in the Python API, PASSES=padded for make figures")
    if kind == "deberta-v2" and getattr(config, "conv_kernel_size", 0) > 0:
        raise PackingUnsupportedError(
            "packed passes do not support DeBERTa v2 with a convolution layer (conv_kernel_size > 0): it mixes "
            "neighbouring slots, which a packed row does not keep; run it with padded passes: passes='padded' in "
            "the Python API, PASSES=padded for make figures")


def at_slots(matrices: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Slot-indexed matrices [..., L, L] at the positions of a packed batch: [B, ..., W, W], entry (i, j) of row b
    being matrices[..., slots[b, i], slots[b, j]]."""
    slots = slots.to(matrices.device)
    gathered = matrices[..., slots[:, :, None], slots[:, None, :]]  # [..., B, W, W]
    return gathered.movedim(-3, 0)


def _relative_slots(slots: torch.Tensor) -> torch.Tensor:
    """[B, W, W]: slot of query i minus slot of key j."""
    return slots[:, :, None] - slots[:, None, :]


def _mpnet_position_bias(encoder, slots: torch.Tensor):
    def compute_position_bias(x, position_ids=None, num_buckets=32):
        # memory minus context, bucketed, as MPNet's own bias over slot indices 0..L-1
        bucket = encoder.relative_position_bucket(-_relative_slots(slots), num_buckets=num_buckets)
        return encoder.relative_attention_bias(bucket).permute(0, 3, 1, 2).contiguous()  # [B, H, W, W]
    return compute_position_bias


def _deberta_relative_positions(encoder, slots: torch.Tensor, heads: int):
    module = sys.modules[type(encoder).__module__]
    v2 = hasattr(module, "make_log_bucket_position")

    def get_rel_pos(hidden_states, query_states=None, relative_pos=None):
        if not encoder.relative_attention or relative_pos is not None:
            return relative_pos
        rel = _relative_slots(slots)
        if not v2:
            return rel  # [B, W, W]: the attention module broadcasts it over heads
        if encoder.position_buckets > 0 and encoder.max_relative_positions > 0:
            rel = module.make_log_bucket_position(rel, encoder.position_buckets, encoder.max_relative_positions)
        # DeBERTa v2 folds heads into the batch ([B * H, W, W]) and drops a leading dimension of one
        return rel.to(torch.long).repeat_interleave(heads, dim=0)[None]
    return get_rel_pos


@contextmanager
def _attribute(obj, name, value):
    """`obj.name` is `value` inside the context. A name the model no longer has (another transformers version) is
    refused: the packed pass would otherwise run without the slot positions it needs."""
    if not hasattr(obj, name):
        raise PackingUnsupportedError(
            f"{type(obj).__name__} has no {name!r} in this transformers version, so packed passes cannot give it slot "
            f"positions; run it with padded passes: passes='padded' in the Python API, PASSES=padded for make figures")
    had = name in obj.__dict__
    before = obj.__dict__.get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            obj.__dict__[name] = before
        else:
            obj.__dict__.pop(name, None)


@contextmanager
def slot_positions(model, slots: torch.Tensor, length: int):
    """While a packed batch runs: every relative position comes from the slots, and ``replace_heads`` sees them."""
    check_packable(model)
    base = getattr(model, "base_model", model)
    with ExitStack() as stack:
        encoder = getattr(base, "encoder", None)
        kind = model.config.model_type
        if kind == "mpnet":
            stack.enter_context(_attribute(encoder, "compute_position_bias", _mpnet_position_bias(encoder, slots)))
        elif kind in ("deberta", "deberta-v2"):
            heads = model.config.num_attention_heads
            stack.enter_context(_attribute(encoder, "get_rel_pos", _deberta_relative_positions(encoder, slots, heads)))
            if kind == "deberta":  # v1 clips distances to the span of the input: the layout's L, not the row's W
                module = sys.modules[type(encoder).__module__]

                def layout_span(query_layer, key_layer, max_relative_positions):
                    return torch.tensor(min(length, max_relative_positions))
                stack.enter_context(_attribute(module, "compute_attention_span", layout_span))
        _ACTIVE[base] = (slots, length)
        stack.callback(_ACTIVE.pop, base, None)
        yield


def run_backbone(model, batch, **kwargs):
    """The model's output on one batch (a ``Batch`` or a dict of padded inputs), on the model's device."""
    batch = as_batch(batch)
    device = model_device(model)
    inputs = inputs_on(batch.inputs, device)
    if not batch.packed:
        return model(**inputs, **kwargs)
    if int(batch.slots.max()) >= batch.length or batch.slots.shape[1] > batch.length:
        raise ValueError(f"a packed batch of width {batch.slots.shape[1]} holds slot {int(batch.slots.max())}, "
                         f"beyond its layout's L={batch.length}")
    slots = batch.slots.to(device)
    if model.config.model_type not in COUNTED_POSITIONS:
        inputs["position_ids"] = slots
    with slot_positions(model, slots, batch.length):
        return model(**inputs, **kwargs)
