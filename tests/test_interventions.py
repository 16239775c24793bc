"""One hook for any attention intervention (``patch_attention``), on every family, and the interventions it comes
with, each against an independent computation."""
import re

import pytest
import torch

from papa_utils import replace_heads
from papa_utils.teaching.interventions import (PATTERNS, first_token, on_heads, papa_mix, previous_token, self_token, uniform,
                                      zero)
from papa_utils.core.replace import patch_attention
from tiny_models import FAMILIES, HEADS, LAYERS, tiny_batch, tiny_model

L = 16


@pytest.fixture(params=list(FAMILIES))
def family(request):
    return request.param


def batch_for(model):
    return tiny_batch(L, pad_id=model.config.pad_token_id or 0)


def hidden(model, batch, **kw):
    with torch.no_grad():
        return model(**batch, **kw).last_hidden_state


def real(batch):
    return batch["attention_mask"].bool()


def test_the_identity_leaves_every_output_unchanged(family):
    model = tiny_model(family)
    batch = batch_for(model)
    seen = []

    def identity(layer, probs, token_mask):
        seen.append((layer, tuple(probs.shape), tuple(token_mask.shape)))
        return probs

    with patch_attention(model, identity):
        out = hidden(model, batch)
    assert (out - hidden(model, batch)).abs().max().item() <= 1e-6
    assert seen == [(layer, (3, HEADS, L, L), (3, L)) for layer in range(LAYERS)]  # every layer, in order, once


def test_uniform_attention_equals_constant_matrices_of_ones(family):
    """Uniform over the real keys, against an independent path: every head replaced by an all-ones matrix,
    which replace_heads masks to the real pairs and renormalises."""
    model = tiny_model(family)
    batch = batch_for(model)
    with patch_attention(model, on_heads(uniform)):
        patched = hidden(model, batch)
    with replace_heads(model, torch.ones(LAYERS, HEADS, L, L), heads="all"):
        reference = hidden(model, batch)
    assert (patched - reference)[real(batch)].abs().max().item() <= 1e-5
    own = model(**batch, output_attentions=True).attentions[0]  # the model's own attention is not uniform
    assert (own - uniform(own, batch["attention_mask"])).abs().max().item() > 1e-2


def test_papas_constant_mix_equals_replace_heads(family):
    model = tiny_model(family)
    batch = batch_for(model)
    constants = torch.rand(LAYERS, HEADS, L, L, generator=torch.Generator().manual_seed(1))
    heads = [(layer, h) for layer in range(LAYERS) for h in range(0, HEADS, 2)]
    with patch_attention(model, papa_mix(model, constants, heads)):
        patched = model(**batch, output_attentions=True)
    with replace_heads(model, constants, heads=heads):
        reference = model(**batch, output_attentions=True)
    assert (patched.last_hidden_state - reference.last_hidden_state)[real(batch)].abs().max().item() <= 1e-5
    for mine, theirs in zip(patched.attentions, reference.attentions):
        assert (mine - theirs).abs().max().item() <= 1e-6


def test_leaving_restores_the_model(family):
    model = tiny_model(family)
    batch = batch_for(model)
    before, implementation = hidden(model, batch), model.config._attn_implementation
    with patch_attention(model, on_heads(zero)):
        assert (hidden(model, batch) - before).abs().max().item() > 1e-3
    assert model.config._attn_implementation == implementation
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert not any("_papa_state" in m.__dict__ or "forward" in m.__dict__ for m in model.modules())
    assert torch.equal(hidden(model, batch), before)


def test_a_function_that_returns_another_shape_is_refused():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match=re.escape(
            "patch_attention: the function must return attention probabilities of the shape it was given, "
            f"[batch, heads, L, L] = (3, {HEADS}, {L}, {L}), got ({HEADS}, {L}, {L}) for layer 0")):
        with patch_attention(model, lambda layer, probs, mask: probs[0]):
            hidden(model, batch_for(model))


def test_only_the_listed_heads_change():
    model = tiny_model("bert")
    batch = batch_for(model)
    kept = {}

    def spy(pattern):
        def fn(layer, probs, token_mask):
            out = on_heads(pattern, [(1, 3), (1, 5)])(layer, probs, token_mask)
            kept[layer] = (probs, out)
            return out
        return fn

    with patch_attention(model, spy(self_token)):
        hidden(model, batch)
    assert torch.equal(kept[0][0], kept[0][1])  # layer 0: nothing listed
    probs, out = kept[1]
    others = [h for h in range(HEADS) if h not in (3, 5)]
    assert torch.equal(out[:, others], probs[:, others]) and not torch.equal(out[:, 3], probs[:, 3])


def hand_mask():
    """Two examples: real, padding, real (a PAPA pair layout), and a short one."""
    return torch.tensor([[1, 1, 0, 0, 1, 1], [1, 1, 1, 0, 0, 0]])


def test_each_pattern_does_what_its_name_says():
    mask = hand_mask()
    probs = torch.rand(2, 2, 6, 6)
    rows = mask.bool()
    for name, pattern in PATTERNS.items():
        out = pattern(probs, mask)
        assert out.shape == probs.shape, name
        assert (out[~rows[:, None, :, None].expand_as(out)] == 0).all(), name  # padded query rows stay 0
        assert (out * (1 - mask[:, None, None, :]) == 0).all(), name  # nothing on padded keys
        if name != "zero":
            assert torch.allclose(out.sum(-1)[rows[:, None].expand(-1, 2, -1)], torch.ones(1)), name
    # the key each real row attends to, example 0 (real positions 0, 1, 4, 5)
    key = lambda pattern: pattern(probs, mask)[0, 0].argmax(-1)[[0, 1, 4, 5]].tolist()  # noqa: E731
    assert key(previous_token) == [0, 0, 1, 4]  # padding skipped; the first real token attends to itself
    assert key(first_token) == [0, 0, 0, 0] and key(self_token) == [0, 1, 4, 5]
    assert torch.allclose(uniform(probs, mask)[0, 1, 4], torch.tensor([0.25, 0.25, 0, 0, 0.25, 0.25]))


def test_the_batch_mean_averages_each_entry_over_the_examples_where_it_is_real():
    """Example 1's slot 2 is padding: its (filled) padded row and column never enter the mean, and entries with
    slot 2 are example 0's own."""
    from papa_utils.teaching.interventions import batch_mean

    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    probs = torch.tensor([[[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]],
                          [[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.5, 0.5, 0.0]]])[:, None]
    mean = torch.tensor([[0.35, 0.4, 0.5], [0.75, 0.15, 0.2], [0.1, 0.1, 0.8]])
    second = torch.zeros(3, 3)  # example 1: its real pairs only, each row renormalised
    second[:2, :2] = mean[:2, :2] / mean[:2, :2].sum(-1, keepdim=True)
    expected = torch.stack([mean / mean.sum(-1, keepdim=True), second])[:, None]
    assert torch.allclose(batch_mean(probs, mask), expected)


def test_patch_attention_refuses_a_packed_batch():
    """A patch function sees positions; in a packed row they are not the layout's slots."""
    from papa_utils.core.layout import Encoded
    from papa_utils.core.packing import backbone_batches, run_backbone

    model = tiny_model("bert")
    batch = batch_for(model)
    data = Encoded(batch["input_ids"], batch["attention_mask"], None, torch.zeros(3, dtype=torch.long))
    with patch_attention(model, on_heads(uniform)), pytest.raises(ValueError, match=re.escape(
            "patch_attention, record_attention and attention contexts nested in one another run on batches of the "
            "whole layout (a function sees positions, and a packed row's positions are not its slots): give them "
            "padded batches, backbone_batches(data, size, 'padded')")):
        run_backbone(model, next(iter(backbone_batches(data, 3, "packed"))))
