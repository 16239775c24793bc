"""Packed passes (real tokens only) equal padded passes (the whole PAPA layout) on every real slot, per family."""
import pytest
import torch

from papa_utils import AveragesMismatchError, get_task, replace_heads
from papa_utils.core.averages import compute_average_attention
from papa_utils.teaching.head_stats import head_statistics
from papa_utils.core.head_scores import head_scores
from papa_utils.core.layout import Encoded
from papa_utils.core.packing import PackingUnsupportedError, backbone_batches, pack, run_backbone
from papa_utils.core.probe import ProbeConfig, make_probe, predict, train_probe
from papa_utils.core.features import batch_rows, extract_features, load_features, save_features
from tiny_models import FAMILIES, HEADS, LAYERS, VOCAB, tiny_model

L = 16
HALF = [(layer, h) for layer in range(LAYERS) for h in range(HEADS) if (layer + h) % 2]  # scattered heads
CONFIGURATIONS = {"none": {"heads": []}, "half": {"heads": HALF}, "all": {"heads": "all"},
                  "gates": {"heads": "all", "gates": True}}


def layout_data(pad_id=0, n=7, seed=0, token_task=False, with_types=False):
    """Examples in the PAPA layout: pairs with a gap after the first segment, short singles with the separator at
    L-1, a full row, a row of [CLS] and [SEP] only. Slot distances reach L-1 in rows of a few real tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (n, L), generator=g)
    mask = torch.ones(n, L, dtype=torch.long)
    mask[0, 5: L // 2] = 0  # pair, short first segment
    mask[1, 4: L - 1] = 0  # short single sentence
    mask[3, 3: L // 2] = 0  # pair, both segments short
    mask[3, L // 2 + 2: L - 1] = 0
    mask[4, 1: L - 1] = 0  # [CLS] and the final separator only
    mask[5, 7: L - 1] = 0
    ids[mask == 0] = pad_id
    types = torch.zeros(n, L, dtype=torch.long)
    types[[0, 3], L // 2: L - 1] = 1  # the second segments of the pairs
    types[mask == 0] = 0
    if token_task:
        labels = torch.randint(0, 5, (n, L), generator=g)
        labels[mask == 0] = -100
        labels[:, 0] = labels[:, L - 1] = -100
        labels[::2, 2] = -100  # a later sub-token of a word
    else:
        labels = (ids[:, 1] > VOCAB // 2).long()
    return Encoded(ids, mask, types if with_types else None, labels, pad_id=pad_id)


def model_and_data(family, **kw):
    """A tiny model and layout data with token types where the family's embeddings take them."""
    model = tiny_model(family)
    types = getattr(model.config, "type_vocab_size", 0) > 1
    return model, layout_data(model.config.pad_token_id or 0, with_types=types, **kw)


def constants(seed=1):
    return torch.rand(LAYERS, HEADS, L, L, generator=torch.Generator().manual_seed(seed))


def gates():
    """A gate per head, from leaning on the constant matrix (-3) to on the head's own attention (+3), shuffled."""
    order = torch.randperm(LAYERS * HEADS, generator=torch.Generator().manual_seed(3))
    return torch.linspace(-3, 3, LAYERS * HEADS)[order].reshape(LAYERS, HEADS)


def hidden_grid(model, data, passes, batch_size=2, **kw):
    """Every level's hidden states [n, L, N+1, D] on every real slot (zeros elsewhere), from `passes` batches."""
    grid = None
    with torch.no_grad():
        for batch in backbone_batches(data, batch_size, passes):
            states = torch.stack(run_backbone(model, batch, output_hidden_states=True, **kw).hidden_states, 2)
            if grid is None:
                grid = torch.zeros(len(data), L, *states.shape[2:])
            real = batch.token_mask.bool()
            grid[batch.examples[:, None].expand_as(real)[real], batch.slots[real]] = states[real]
    return grid


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_packed_pass_equals_the_padded_pass_on_every_real_slot(family, configuration):
    """fp32, every layer's hidden states, no head / half of them / all replaced, and under a gate mix; batches of
    two, so packed rows are shorter than L and hold slots far apart."""
    model, data = model_and_data(family)
    setting = CONFIGURATIONS[configuration]
    kw = {"gates": gates()} if setting.get("gates") else {}
    grids = {}
    for passes in ("padded", "packed"):
        with replace_heads(model, constants(), setting["heads"], **kw):
            grids[passes] = hidden_grid(model, data, passes)
    real = data.attention_mask.bool()
    assert (grids["packed"] - grids["padded"])[real].abs().max().item() <= 1e-5
    assert (grids["packed"][real].abs().sum(-1) > 0).all()  # every real slot of every level was written


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta", "deberta-v2", "mpnet"])
def test_packed_pass_equals_the_padded_pass_with_probabilities_returned(family):
    """The probability path (output_attentions) of replaced layers, and each real row of the returned attention
    at the slots it belongs to."""
    model, data = model_and_data(family)
    with replace_heads(model, constants(), HALF):
        padded = hidden_grid(model, data, "padded", output_attentions=True)
        packed = hidden_grid(model, data, "packed", output_attentions=True)
        for batch in backbone_batches(data, 3, "packed"):
            with torch.no_grad():
                attention = run_backbone(model, batch, output_attentions=True).attentions[1]  # [B, H, W, W]
                whole = model(**data.model_inputs(batch.examples), output_attentions=True).attentions[1]
            for b in range(len(batch)):
                slots = batch.slots[b][batch.token_mask[b].bool()]
                own = attention[b][:, :len(slots), :len(slots)]
                assert (own - whole[b][:, slots][:, :, slots]).abs().max() <= 1e-5
    real = data.attention_mask.bool()
    assert (packed - padded)[real].abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", list(FAMILIES))
def test_averages_from_packed_passes_equal_those_from_padded_passes(family):
    model, data = model_and_data(family, n=9)
    padded = compute_average_attention(model, backbone_batches(data, 4, "padded"), progress=False)
    packed = compute_average_attention(model, backbone_batches(data, 4, "packed"), progress=False)
    assert torch.equal(packed.counts, padded.counts)
    assert packed.averages.shape == (LAYERS, HEADS, L, L)
    assert (packed.averages - padded.averages).abs().max() <= 1e-6
    assert padded.counts[L - 1, 0] == 9 and padded.counts[4, 4] < 9  # real pairs counted per slot pair


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "deberta", "mpnet"])
def test_head_scores_and_statistics_do_not_depend_on_the_passes(family):
    from papa_utils.core.averages import AttentionAverages

    model, data = model_and_data(family)
    averages = AttentionAverages(constants(), torch.ones(L, L), {"model": model.config.papa_model_name})
    scores = {p: head_scores(model, averages, backbone_batches(data, 3, p)) for p in ("padded", "packed")}
    for name in scores["padded"]:
        assert (scores["packed"][name] - scores["padded"][name]).abs().max() <= 1e-5, name

    class Tokenizer:  # what head_statistics asks of a tokenizer
        cls_token_id, sep_token_id, all_special_ids = 7, 8, [7, 8]

        def convert_ids_to_tokens(self, i):
            return "," if i % 5 == 0 else "w"

    stats = {p: head_statistics(model, Tokenizer(), backbone_batches(data, 3, p), pairs=True) for p in ("padded", "packed")}
    for name in stats["padded"]:
        assert (stats["packed"][name] - stats["padded"][name]).abs().max() <= 1e-5, name


@pytest.mark.parametrize("task_name", ["sst2", "pos"])
def test_probe_logits_and_predictions_agree(task_name):
    """The sentence probe's logits (fp32 states straight from each pass) and the predictions of a trained probe
    on each pass's cached features."""
    model, data = model_and_data("mpnet", token_task=task_name == "pos", n=12)
    task = get_task(task_name)
    probe = make_probe(task, model, L).eval()
    torch.nn.init.normal_(probe.pool.weight, std=0.3)
    if task_name == "sst2":
        torch.nn.init.normal_(probe.slot_weights)
    logits = {}
    with torch.no_grad(), replace_heads(model, constants(), HALF):
        for passes in ("padded", "packed"):
            out = torch.zeros(len(data), task.num_labels) if task_name == "sst2" else {}
            for batch in backbone_batches(data, 4, passes):
                states = torch.stack(run_backbone(model, batch, output_hidden_states=True).hidden_states, 1)
                part = batch_rows(task, data, batch, states)
                values = part.logits(probe)
                if task_name == "sst2":
                    out[batch.examples] = values
                else:
                    example = batch.examples[part.rows.owner]
                    out.update({(int(e), int(s)): v for e, s, v in zip(example, part.rows.slot, values)})
            logits[passes] = out
    if task_name == "sst2":
        assert (logits["packed"] - logits["padded"]).abs().max() <= 1e-5
    else:
        assert logits["packed"].keys() == logits["padded"].keys() == {
            (int(e), int(s)) for e, s in (data.labels != -100).nonzero()}
        assert max((logits["packed"][k] - logits["padded"][k]).abs().max() for k in logits["packed"]) <= 1e-5
    # the cached path (ragged fp16 features, ``predict``'s chunks) gives what the batches gave, to fp16 rounding
    features = {p: extract_features(model, task, data, constants(), HALF, passes=p) for p in ("padded", "packed")}
    for passes, found in features.items():
        seen = []
        original = probe.forward
        probe.forward = lambda *a: seen.append(original(*a)) or seen[-1]
        predict(probe, task, found, data)
        probe.forward = original
        cached = torch.cat(seen)
        if task_name == "sst2":
            assert (cached - logits["padded"]).abs().max() <= 2e-2, passes
        else:
            expected = torch.stack([logits["padded"][(int(e), int(s))] for e, s in zip(found.example, found.slot)])
            assert (cached - expected).abs().max() <= 2e-2, passes
    assert train_probe(model, task, data, data, config=ProbeConfig(epochs=1, batch_size=4, passes="packed")).metrics


def test_the_feature_cache_holds_real_tokens_only_with_their_slots(tmp_path):
    model, data = model_and_data("bert")
    features = extract_features(model, get_task("sst2"), data)
    real = data.attention_mask.bool()
    assert features.states.shape == (int(real.sum()), LAYERS + 1, 48)
    assert torch.equal(torch.stack([features.example, features.slot], 1), real.nonzero())
    meta = {"model": "tiny-bert", "passes": "packed"}
    path = save_features(features, tmp_path / "f.pt", meta)
    assert load_features(path, meta) is not None
    assert load_features(path, {**meta, "passes": "padded"}) is None  # written by the other path: recomputed


def test_packed_batches_gather_each_examples_real_slots_in_order():
    data = layout_data(pad_id=1)
    batches = list(backbone_batches(data, 3, "packed"))
    assert sorted(torch.cat([b.examples for b in batches]).tolist()) == list(range(len(data)))
    lengths = [int(data.attention_mask[e].sum()) for b in batches for e in b.examples]
    assert lengths == sorted(lengths, reverse=True)  # batched by real length
    for batch in batches:
        assert batch.slots.shape[1] == int(data.attention_mask[batch.examples].sum(1).max()) <= L
        for b, e in enumerate(batch.examples):
            real = data.attention_mask[e].bool()
            n = int(real.sum())
            assert batch.slots[b, :n].tolist() == real.nonzero().flatten().tolist()
            assert torch.equal(batch.inputs["input_ids"][b, :n], data.input_ids[e, real])
            assert (batch.inputs["input_ids"][b, n:] == 1).all() and (batch.token_mask[b, n:] == 0).all()
    whole = list(backbone_batches(data, 3, "padded"))
    assert torch.equal(torch.cat([b.examples for b in whole]), torch.arange(len(data)))
    assert all(b.slots.shape[1] == L and not b.packed for b in whole)


def test_a_family_without_a_packed_proof_is_refused_with_the_padded_switch():
    from transformers import DebertaV2Config, DebertaV2Model, GPT2Config, GPT2Model

    gpt2 = GPT2Model(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=VOCAB)).eval()
    batch = pack(layout_data(), [0, 1])
    with pytest.raises(PackingUnsupportedError, match="packed passes are not proven for model type 'gpt2' .*; run it "
                                                      "with padded passes: passes='padded' in the Python API, "
                                                      "PASSES=padded for make figures"):
        run_backbone(gpt2, batch)
    conv = DebertaV2Model(DebertaV2Config(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                                          intermediate_size=64, conv_kernel_size=3)).eval()
    with pytest.raises(PackingUnsupportedError, match="convolution layer .* PASSES=padded for make figures"):
        run_backbone(conv, batch)
    run_backbone(conv, pack(layout_data(), [0, 1], "padded"))  # the padded pass still runs


def test_a_packed_batch_must_come_from_the_constants_layout():
    model, data = model_and_data("bert")
    short = Encoded(data.input_ids[:, :8].clone(), data.attention_mask[:, :8].clone(), None, data.labels)
    with replace_heads(model, constants(), "all"), pytest.raises(
            AveragesMismatchError, match="constant matrices have length L=16 but this batch has length 8"):
        run_backbone(model, next(backbone_batches(short, 2, "packed")))
    batch = pack(data, [0, 1])
    batch.slots[0, 0] = L  # a slot beyond the layout
    with pytest.raises(ValueError, match="holds slot 16, beyond its layout's L=16"):
        run_backbone(model, batch)
    with pytest.raises(ValueError, match="^passes must be one of 'packed', 'padded', got 'dense'$"):
        next(backbone_batches(data, 2, "dense"))
