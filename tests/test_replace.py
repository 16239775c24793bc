"""Numerical invariants of the attention replacement, on every family (tiny random configs)."""
import pytest
import torch

from papa_utils import (AttentionAverages, AveragesMismatchError, UnsupportedModelError, compute_average_attention,
                        replace_heads)
from papa_utils.core.hooks import attention_modules
from tiny_models import FAMILIES, HEADS, LAYERS, tiny_batch, tiny_model

L = 16


def batch_for(model, length=L):
    return tiny_batch(length, pad_id=model.config.pad_token_id or 0)


def run(model, batch, **kw):
    with torch.no_grad():
        return model(**batch, output_attentions=True, **kw)


def real(batch):
    return batch["attention_mask"].bool()


def random_constants(seed=1, length=L):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(LAYERS, HEADS, length, length, generator=g)


@pytest.fixture(params=list(FAMILIES))
def family(request):
    return request.param


def test_family_mechanism(family):
    kind, modules = attention_modules(tiny_model(family))
    expected = "dropout_hook" if family in ("deberta", "deberta-v2", "mpnet") else "registry"
    assert kind == expected
    assert len(modules) == (1 if family == "albert" else LAYERS)  # ALBERT shares one layer


def test_no_head_replaced_leaves_outputs_identical(family):
    model = tiny_model(family)
    batch = batch_for(model)
    ref = run(model, batch).last_hidden_state
    with replace_heads(model, random_constants(), heads=[]):
        out = run(model, batch).last_hidden_state
    assert (out - ref).abs().max().item() <= 1e-6


def test_own_attention_pattern_leaves_outputs_identical(family):
    """Every head of every layer replaced by this very example's own attention: same outputs (batch of one)."""
    model = tiny_model(family)
    batch = batch_for(model)
    for i in range(3):
        one = {k: v[i: i + 1] for k, v in batch.items()}
        ref = run(model, one)
        own = torch.stack([a[0] for a in ref.attentions])  # [layers, heads, L, L]
        with replace_heads(model, own, heads="all"), torch.no_grad():
            out = model(**one).last_hidden_state  # fast path: no probabilities requested
        diff = (out - ref.last_hidden_state)[real(one)].abs().max().item()
        assert diff <= 1e-5, (family, i, diff)


@pytest.mark.parametrize("heads", ["all", [(0, 3)], [(layer, h) for layer in range(LAYERS) for h in range(0, HEADS, 2)],
                                   [(0, 1), (1, 0), (1, 2)]],  # a different set in each layer: each its own Q/K
                         ids=["all", "one head", "the same heads in every layer", "other heads in each layer"])
def test_fast_path_equals_probability_path(family, heads):
    """Without output_attentions, replaced layers skip probabilities (fused attention for dynamic heads,
    constant x V for replaced ones, Q/K only for dynamic heads): same outputs, padded rows included."""
    model = tiny_model(family)
    batch = batch_for(model)
    with replace_heads(model, random_constants(), heads=heads), torch.no_grad():
        fast = model(**batch).last_hidden_state
        slow = model(**batch, output_attentions=True).last_hidden_state
    with replace_heads(model, random_constants(), heads=heads, fast=False), torch.no_grad():
        straightforward = model(**batch).last_hidden_state
    assert (fast - slow).abs().max().item() <= 1e-5
    assert (fast - straightforward).abs().max().item() <= 1e-5


def test_replaced_rows_sum_to_one_over_real_keys(family):
    model = tiny_model(family)
    batch = batch_for(model)
    batch["attention_mask"][2] = 0  # a fully padded example: rows must be zero, never NaN
    with replace_heads(model, random_constants(), heads="all"):
        out = run(model, batch)
    m = batch["attention_mask"].float()
    for probs in out.attentions:
        assert torch.isfinite(probs).all()
        sums = probs.sum(-1)  # [B, H, L]
        expected = m[:, None, :].expand_as(sums)
        assert torch.allclose(sums, expected, atol=1e-6)
        assert (probs * (1 - m)[:, None, None, :]).abs().max() == 0  # no mass on padded keys
    assert torch.isfinite(out.last_hidden_state).all()


def test_dynamic_heads_keep_their_own_index(family):
    """Replacing heads {0..6, 8} of a 12-head layer leaves heads 7, 9, 10, 11 with their own patterns."""
    model = tiny_model(family)
    batch = batch_for(model)
    ref = run(model, batch).attentions[0]
    replaced = [0, 1, 2, 3, 4, 5, 6, 8]
    with replace_heads(model, random_constants(), heads=[(0, h) for h in replaced]):
        got = run(model, batch).attentions[0]
    pm = (batch["attention_mask"][:, :, None] * batch["attention_mask"][:, None, :]).bool()
    for h in (7, 9, 10, 11):
        assert torch.allclose(got[:, h][pm], ref[:, h][pm], atol=1e-6), h
    const = random_constants()[0]
    for h in replaced:  # and the replaced ones carry their own constant matrix, masked and renormalised
        expected = const[h] * pm
        expected = expected / expected.sum(-1, keepdim=True).clamp_min(1e-12)
        assert torch.allclose(got[:, h], expected, atol=1e-6), h


def test_leaving_the_context_restores_the_model(family):
    model = tiny_model(family)
    batch = batch_for(model)
    ref = run(model, batch).last_hidden_state
    implementation = model.config._attn_implementation
    modules_before = dict(model.named_modules())  # the query/key projections swapped inside the context among them
    _, attention = attention_modules(model)
    installed = attention[0].forward = lambda *a, **k: type(attention[0]).forward(attention[0], *a, **k)  # e.g. a hook
    with replace_heads(model, random_constants(), heads="all"):
        inside = dict(model.named_modules())
        swapped = [name for name in modules_before if inside.get(name) is not modules_before[name]]
        assert swapped or family == "deberta"  # Q/K projections really were swapped (DeBERTa v1: fused in_proj)
        changed = run(model, batch).last_hidden_state
    assert (changed - ref).abs().max() > 1e-3  # replacement did something
    assert model.config._attn_implementation == implementation
    assert not any(m._forward_pre_hooks for m in model.modules())
    modules_after = dict(model.named_modules())
    assert modules_after.keys() == modules_before.keys()
    assert all(modules_after[name] is module for name, module in modules_before.items())  # the very same objects
    assert attention[0].__dict__.get("forward") is installed  # someone else's forward is put back, not deleted
    assert all("forward" not in m.__dict__ and "_papa_state" not in m.__dict__ for m in attention[1:])
    assert torch.equal(run(model, batch).last_hidden_state, ref)


def test_average_of_constant_model_equals_the_constants(family):
    """With all heads replaced by constants C, the measured average attention is C (on real positions)."""
    model = tiny_model(family)
    full = {"input_ids": torch.randint(5, 100, (6, L)), "attention_mask": torch.ones(6, L, dtype=torch.long)}
    const = random_constants(seed=3)
    const = const / const.sum(-1, keepdim=True)
    with replace_heads(model, const, heads="all"):
        avg = compute_average_attention(model, [full], progress=False)
    assert avg.averages.shape == (LAYERS, HEADS, L, L)
    assert torch.allclose(avg.averages, const, atol=1e-6)
    assert avg.meta["examples"] == 6 and avg.meta["length"] == L
    # with padding shared by every example, the average is C masked to real tokens and renormalised
    padded = batch_for(model)
    padded = {k: v[:1].repeat(4, 1) for k, v in padded.items()}
    with replace_heads(model, const, heads="all"):
        avg = compute_average_attention(model, [padded], progress=False)
    pm = (padded["attention_mask"][0, :, None] * padded["attention_mask"][0, None, :]).float()
    expected = const * pm
    expected = expected / expected.sum(-1, keepdim=True).clamp_min(1e-12)
    assert torch.allclose(avg.averages, expected, atol=1e-6)
    assert torch.equal(avg.counts, pm * 4)


def test_average_counts_only_pairs_of_real_tokens():
    model = tiny_model("bert")
    batch = batch_for(model)
    batch["attention_mask"][:, 10] = 0  # slot 10 is padding in every example: its average must be 0
    ref = run(model, batch).attentions
    avg = compute_average_attention(model, [batch], progress=False)
    m = batch["attention_mask"].float()
    pm = m[:, :, None] * m[:, None, :]
    assert torch.equal(avg.counts, pm.sum(0))
    manual = sum(ref[1][b, 4] * pm[b] for b in range(3)) / pm.sum(0).clamp_min(1)
    assert torch.allclose(avg.averages[1, 4], manual, atol=1e-6)
    assert (pm.sum(0) == 0).sum() == 2 * L - 1
    assert avg.averages[1, 4][pm.sum(0) == 0].abs().max() == 0


def test_dropout_applies_after_mixing_in_train_mode(family):
    """Dropout only on the attention probabilities (hidden dropout 0) and every head replaced: train mode must
    differ from eval mode. Dropout applied before the mixing would only hit the dynamic probabilities, which a
    fully replaced layer throws away, and train would equal eval."""
    model = tiny_model(family, attention_dropout_only=True)
    batch = batch_for(model)
    m = real(batch)
    with replace_heads(model, random_constants(), heads="all"), torch.no_grad():
        kept = model.eval()(**batch).last_hidden_state
        torch.manual_seed(0)
        dropped = model.train()(**batch).last_hidden_state
    model.eval()
    with torch.no_grad():  # the unmodified model in train mode: this config drops nothing but attention
        torch.manual_seed(0)
        assert (model.train()(**batch).last_hidden_state - model.eval()(**batch).last_hidden_state)[m].abs().max() > 0
    assert (dropped - kept)[m].abs().max() > 1e-4


def test_unsupported_architecture_fails_clearly():
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=10)).eval()
    with pytest.raises(UnsupportedModelError, match="does not support model type 'gpt2'.*Supported: BERT"):
        with replace_heads(model, torch.zeros(1, 2, 4, 4)):
            pass


def test_constants_of_wrong_shape_or_length_are_refused():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match=r"must have shape \[layers=2, heads=12, L, L\].*got \(2, 6, 16, 16\)"):
        with replace_heads(model, torch.zeros(2, 6, L, L)):
            pass
    for ask_for_probabilities in (True, False):
        with pytest.raises(ValueError, match="constant matrices have length L=16 but this batch has length 24"):
            with replace_heads(model, random_constants(), heads=[(0, 0)]), torch.no_grad():
                model(**batch_for(model, length=24), output_attentions=ask_for_probabilities)
    with pytest.raises(ValueError, match=r"head \(2, 0\) is out of range for 2 layers x 12 heads"):
        with replace_heads(model, random_constants(), heads=[(2, 0)]):
            pass


def test_averages_of_another_model_or_length_are_refused(tmp_path):
    bert = tiny_model("bert")
    avg = compute_average_attention(bert, [batch_for(bert)], task="toy", progress=False)
    path = avg.save(tmp_path / "avg.safetensors")
    loaded = AttentionAverages.load(path, model=bert, length=L)
    assert torch.equal(loaded.averages, avg.averages) and loaded.meta["task"] == "toy"
    assert not list(tmp_path.glob("*.tmp"))
    roberta = tiny_model("roberta")
    with pytest.raises(AveragesMismatchError, match="built for model 'tiny-bert', not 'tiny-roberta'"):
        with replace_heads(roberta, loaded):
            pass
    with pytest.raises(AveragesMismatchError, match="built with length L=16, but the data use L=32"):
        AttentionAverages.load(path, model=bert, length=32)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "deberta"])  # transformers' DeBERTa v1 itself
def test_bf16_autocast_stays_close_to_fp32(family):  # fails under CPU bf16 autocast (masked_fill overflow)
    from papa_utils.core.device import backbone_precision

    model = tiny_model(family)
    batch = batch_for(model)
    linear_dtypes = []
    hooks = [m.register_forward_hook(lambda mod, args, out: linear_dtypes.append(out.dtype))
             for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with replace_heads(model, random_constants(), heads=[(0, h) for h in range(0, HEADS, 2)]), torch.no_grad():
        full = model(**batch).last_hidden_state
        assert set(linear_dtypes) == {torch.float32}
        linear_dtypes.clear()
        with backbone_precision("bf16", "cpu"):
            half = model(**batch).last_hidden_state
    for hook in hooks:
        hook.remove()
    assert linear_dtypes and set(linear_dtypes) == {torch.bfloat16}  # every projection ran in bf16
    m = real(batch)
    assert (half.float() - full)[m].abs().max() < 0.1  # bf16 keeps ~3 significant digits
    assert (half.float() - full)[m].abs().max() > 0  # and autocast really ran in bf16


def test_mpnet_replaced_layers_skip_the_softmax(monkeypatch):
    """MPNet computes attention inline; its fast path must really bypass the module's own probabilities."""
    model = tiny_model("mpnet")
    batch = batch_for(model)
    calls = []
    original = torch.nn.functional.softmax
    monkeypatch.setattr(torch.nn.functional, "softmax", lambda *a, **k: calls.append(1) or original(*a, **k))
    with replace_heads(model, random_constants(), heads="all"), torch.no_grad():
        model(**batch)
    assert calls == []  # every layer fully replaced: no scores, no softmax
    with replace_heads(model, random_constants(), heads=[(0, 1)]), torch.no_grad():
        model(**batch)
    assert len(calls) == LAYERS - 1  # layers without a replaced head run unchanged
    assert all("forward" not in m.__dict__ for m in attention_modules(model)[1])  # restored


def test_a_gate_weighs_a_heads_own_attention_and_one_minus_it_the_constant(family):
    """With gates, a listed head attends with sigmoid(gate) x its own probabilities + (1 - sigmoid(gate)) x its
    renormalised constant matrix: layer 0's probabilities, with a gate of its own for each of four scattered heads,
    computed independently from the model's own attention and renorm(C * m m^T); unlisted heads keep their own.
    Gates far above 0 leave the model as it is, far below 0 are full PAPA. (An inverted mix would read the gate
    ranking backwards.)"""
    model = tiny_model(family)
    batch = batch_for(model)
    constants = random_constants()
    own = run(model, batch)
    with replace_heads(model, constants, heads="all"):
        papa = run(model, batch).last_hidden_state
    gates = torch.randn(LAYERS, HEADS, generator=torch.Generator().manual_seed(2)) * 2
    listed = [1, 4, 5, 9]
    with replace_heads(model, constants, heads=[(0, h) for h in listed], gates=gates):
        gated = run(model, batch).attentions[0]  # layer 0 sees the model's own inputs
    m = batch["attention_mask"].float()
    pairs = (m[:, :, None] * m[:, None, :])[:, None]  # [B, 1, L, L]
    substitute = constants[0][None] * pairs
    substitute = substitute / substitute.sum(-1, keepdim=True).clamp_min(1e-12)  # [B, heads, L, L]
    weight = torch.ones(HEADS)  # how much of its own attention each head keeps: all of it for unlisted heads
    weight[listed] = torch.sigmoid(gates[0, listed])
    assert 0.05 < weight[listed].min() and weight[listed].max() < 0.95  # gates neither open nor closed
    weight = weight[None, :, None, None]
    expected = weight * own.attentions[0] + (1 - weight) * substitute
    rows = real(batch)[:, None, :, None].expand_as(expected)  # real query rows
    assert (gated - expected)[rows].abs().max().item() <= 1e-5
    for value, reference in ((30.0, own.last_hidden_state), (-30.0, papa)):
        with replace_heads(model, constants, heads="all", gates=torch.full((LAYERS, HEADS), value)):
            out = run(model, batch).last_hidden_state
        assert (out - reference)[real(batch)].abs().max().item() <= 1e-5, value
