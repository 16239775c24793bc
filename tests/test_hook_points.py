"""Named attention points on every family: ``record_attention`` keeps what each layer attends with, a patch can
target one point by name, and nested contexts mean the same in every family (the inner function gets what the outer
one returns, in both orders)."""
import re

import pytest
import torch

from papa_utils import replace_heads
from papa_utils.teaching.interventions import on_heads, self_token, uniform
from papa_utils.core.layout import pair_mask
from papa_utils.core.hooks import hook_names, renormalise_rows
from papa_utils.core.replace import patch_attention, record_attention
from tiny_models import FAMILIES, HEADS, LAYERS, tiny_batch, tiny_model

L = 16
REGISTRY = {"bert", "roberta", "electra", "xlm-roberta", "albert", "distilbert"}


@pytest.fixture(params=list(FAMILIES))
def family(request):
    return request.param


def run(model, batch, **kw):
    with torch.no_grad():
        return model(**batch, **kw)


def batch_for(model):
    return tiny_batch(L, pad_id=model.config.pad_token_id or 0)


def constants():
    return torch.rand(LAYERS, HEADS, L, L, generator=torch.Generator().manual_seed(1))


def test_the_cache_holds_what_each_layer_attends_with_under_its_name(family):
    """Every layer's pattern, [batch, heads, L, L], equal to the model's own attention (output_attentions), and the
    scores where the family computes them outside the layer; recording changes no output."""
    model = tiny_model(family)
    batch = batch_for(model)
    own = run(model, batch, output_attentions=True)
    with record_attention(model) as cache:
        out = run(model, batch)
    names = [f"blocks.{layer}.attn.pattern" for layer in range(LAYERS)]
    if family in REGISTRY:
        names = [n for layer in range(LAYERS) for n in (f"blocks.{layer}.attn.pattern", f"blocks.{layer}.attn.scores")]
    assert sorted(cache) == sorted(names) == sorted(hook_names(model))
    assert torch.equal(out.last_hidden_state, own.last_hidden_state)
    for layer in range(LAYERS):
        pattern = cache[f"blocks.{layer}.attn.pattern"]
        assert pattern.shape == (3, HEADS, L, L)
        assert (pattern - own.attentions[layer]).abs().max().item() <= 1e-6, layer
    if family in REGISTRY:
        scores = cache["blocks.0.attn.scores"]
        assert (torch.softmax(scores, -1) - cache["blocks.0.attn.pattern"]).abs().max().item() <= 1e-6


def test_under_replace_heads_the_cache_holds_the_constant_rows(family):
    """What the model actually used: the replaced heads' masked, renormalised constants, the others their own
    probabilities; the outputs are those of replace_heads alone."""
    model = tiny_model(family)
    batch = batch_for(model)
    c = constants()
    heads = [(layer, h) for layer in range(LAYERS) for h in range(0, HEADS, 3)]
    with replace_heads(model, c, heads=heads):
        alone = run(model, batch).last_hidden_state
        with record_attention(model) as cache:
            recorded = run(model, batch).last_hidden_state
    assert (recorded - alone)[batch["attention_mask"].bool()].abs().max().item() <= 1e-5
    expected = renormalise_rows(c[1, 3][None] * pair_mask(batch["attention_mask"])[:, 0])
    assert (cache["blocks.1.attn.pattern"][:, 3] - expected).abs().max().item() <= 1e-6
    assert cache["blocks.1.attn.pattern"][:, 3].sum(-1)[batch["attention_mask"].bool()].allclose(torch.ones(()))


def test_a_named_patch_changes_its_layer_only(family):
    """{"blocks.1.attn.pattern": fn} patches layer 1 with the signature of the one-function form, and gives what
    that form gives when the function leaves layer 0 alone."""
    model = tiny_model(family)
    batch = batch_for(model)
    seen = []

    def spy(layer, probs, token_mask):
        seen.append(layer)
        return on_heads(uniform)(layer, probs, token_mask)

    with patch_attention(model, {"blocks.1.attn.pattern": spy}), record_attention(model) as cache:
        named = run(model, batch).last_hidden_state
    with patch_attention(model, lambda layer, p, m: on_heads(uniform)(layer, p, m) if layer == 1 else p):
        reference = run(model, batch).last_hidden_state
    own = run(model, batch, output_attentions=True).attentions
    assert seen == [1] and torch.equal(named, reference)
    assert (cache["blocks.0.attn.pattern"] - own[0]).abs().max().item() <= 1e-6
    assert (cache["blocks.1.attn.pattern"] - uniform(own[1], batch["attention_mask"])).abs().max().item() <= 1e-6


def test_an_unknown_point_is_refused_with_the_names_there_are():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match=re.escape(
            "patch_attention: no attention point named 'blocks.2.attn.pattern', 'blocks.0.attn.scores'; this model's "
            "are blocks.0.attn.pattern to blocks.1.attn.pattern (the scores cannot be patched)")):
        with patch_attention(model, {"blocks.2.attn.pattern": lambda *a: a[1], "blocks.0.attn.scores": lambda *a: a[1]}):
            pass


def test_a_patch_that_returns_nan_is_named():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match=re.escape("patch_attention: the function returned NaN probabilities for "
                                                   "layer 0")):
        with patch_attention(model, lambda layer, probs, mask: probs * float("nan")):
            run(model, batch_for(model))


@pytest.mark.parametrize("order", ["uniform outside", "self inside-out"])
def test_nesting_applies_the_inner_function_to_what_the_outer_returns(family, order):
    """Two patches in both orders: the inner one receives the outer one's result, and the model attends with the
    inner one's. Leaving the inner context leaves the outer one in place."""
    model = tiny_model(family)
    batch = batch_for(model)
    mask = batch["attention_mask"]
    outer_pattern, inner_pattern = (uniform, self_token) if order == "uniform outside" else (self_token, uniform)
    received = {}

    def inner(layer, probs, token_mask):
        received[layer] = probs
        return on_heads(inner_pattern)(layer, probs, token_mask)

    with patch_attention(model, on_heads(outer_pattern)):
        with patch_attention(model, inner), record_attention(model) as cache:
            run(model, batch)
        with record_attention(model) as after:
            run(model, batch)
    own = run(model, batch, output_attentions=True).attentions[0]
    for layer in range(LAYERS):
        assert torch.allclose(received[layer], outer_pattern(own, mask), atol=1e-6)
        assert torch.allclose(cache[f"blocks.{layer}.attn.pattern"], inner_pattern(own, mask), atol=1e-6)
        assert torch.allclose(after[f"blocks.{layer}.attn.pattern"], outer_pattern(own, mask), atol=1e-6)


@pytest.mark.parametrize("outside", ["replace_heads", "patch_attention"])
def test_replace_heads_nests_with_a_patch_in_both_orders(family, outside):
    """The constant mix is one step like any other: inside a uniform patch it replaces the listed heads of the
    uniform pattern; around a patch, the patch receives the constant rows."""
    model = tiny_model(family)
    batch = batch_for(model)
    mask = batch["attention_mask"]
    c, heads = constants(), [(0, 1), (1, 1)]
    received = {}

    def spy(layer, probs, token_mask):
        received[layer] = probs
        return probs

    first, second = ((lambda: replace_heads(model, c, heads=heads)), (lambda: patch_attention(model, spy))) \
        if outside == "replace_heads" else ((lambda: patch_attention(model, on_heads(uniform))),
                                            (lambda: replace_heads(model, c, heads=heads)))
    with first(), second(), record_attention(model) as cache:
        run(model, batch)
    constant_rows = renormalise_rows(c[1, 1][None] * pair_mask(mask)[:, 0])
    pattern = cache["blocks.1.attn.pattern"]
    assert torch.allclose(pattern[:, 1], constant_rows, atol=1e-6)
    if outside == "replace_heads":
        assert torch.allclose(received[1][:, 1], constant_rows, atol=1e-6)
    else:
        assert torch.allclose(pattern[:, 0], uniform(pattern, mask)[:, 0], atol=1e-6)


def test_leaving_every_context_restores_the_model(family):
    model = tiny_model(family)
    batch = batch_for(model)
    before, implementation = run(model, batch).last_hidden_state, model.config._attn_implementation
    with replace_heads(model, constants(), heads="all"), patch_attention(model, on_heads(uniform)), \
            record_attention(model):
        run(model, batch)
    assert model.config._attn_implementation == implementation
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert not any(k in m.__dict__ for m in model.modules() for k in ("_papa_state", "_papa_active", "forward"))
    assert torch.equal(run(model, batch).last_hidden_state, before)


def test_an_error_inside_a_nested_context_leaves_the_outer_one_working_and_then_the_model_restored(family):
    model = tiny_model(family)
    batch = batch_for(model)
    before = run(model, batch).last_hidden_state
    with patch_attention(model, on_heads(uniform)):
        patched = run(model, batch).last_hidden_state
        with pytest.raises(RuntimeError, match="inside"):
            with patch_attention(model, on_heads(self_token)):
                raise RuntimeError("inside")
        assert torch.equal(run(model, batch).last_hidden_state, patched)
    assert not any(k in m.__dict__ for m in model.modules() for k in ("_papa_state", "_papa_active"))
    assert torch.equal(run(model, batch).last_hidden_state, before)


def test_replace_heads_inside_replace_heads_changes_only_its_own_heads():
    """The inner constants go to the heads the inner context lists; the outer context's heads keep theirs, and an
    outer patch's rows on the other heads are left as it made them (not renormalised)."""
    model = tiny_model("bert")
    batch = batch_for(model)
    mask = batch["attention_mask"]
    c, d = constants(), constants().flip(-1)
    with replace_heads(model, c, heads=[(1, 0)]), replace_heads(model, d, heads=[(1, 2)]), \
            record_attention(model) as cache:
        run(model, batch)
    pattern = cache["blocks.1.attn.pattern"]
    assert torch.allclose(pattern[:, 0], renormalise_rows(c[1, 0][None] * pair_mask(mask)[:, 0]), atol=1e-6)
    assert torch.allclose(pattern[:, 2], renormalise_rows(d[1, 2][None] * pair_mask(mask)[:, 0]), atol=1e-6)
    halved = lambda layer, probs, m: probs / 2  # noqa: E731  (rows that sum to one half)
    with patch_attention(model, halved), replace_heads(model, d, heads=[(1, 2)]), record_attention(model) as cache:
        run(model, batch)
    rows = cache["blocks.1.attn.pattern"][0].sum(-1)[:, mask[0].bool()]  # [heads, real rows] of the first example
    assert torch.allclose(rows[1], torch.full_like(rows[1], 0.5)) and torch.allclose(rows[2], torch.ones_like(rows[2]))


def test_record_attention_refuses_a_packed_batch():
    from papa_utils.core.layout import Encoded
    from papa_utils.core.packing import backbone_batches, run_backbone

    model = tiny_model("bert")
    batch = batch_for(model)
    data = Encoded(batch["input_ids"], batch["attention_mask"], None, torch.zeros(3, dtype=torch.long))
    with record_attention(model), pytest.raises(ValueError, match=re.escape(
            "patch_attention, record_attention and attention contexts nested in one another run on batches of the "
            "whole layout")):
        run_backbone(model, next(iter(backbone_batches(data, 3, "packed"))))
