"""Head statistics and the input-dependence score, on hand-built attention matrices with known answers, then on
tiny models."""
import math

import pytest
import torch

from papa_utils import AveragesMismatchError, compute_average_attention, replace_heads
from papa_utils.teaching.head_stats import attention_statistics, hidden_state_change, hidden_state_changes, offset_keys
from papa_utils.reports.statistics import ranking_agreement
from papa_utils.core.head_scores import head_scores, input_dependence, js_divergence, papa_substitute, ranking_from_scores, random_ranking, score_attention
from papa_utils.teaching.interventions import on_heads, papa_mix, uniform
from tiny_models import HEADS, LAYERS, tiny_batch, tiny_model

L = 8


def mask_of(*real_counts_and_gaps):
    """[B, L] masks: a tuple (first, gap) puts `first` real slots, then `gap` padding slots, then real to L."""
    rows = []
    for first, gap in real_counts_and_gaps:
        m = torch.ones(L, dtype=torch.long)
        m[first: first + gap] = 0
        rows.append(m)
    return torch.stack(rows)


def masked_uniform(mask):
    """[B, 1, 1, L, L] uniform attention over real keys on real rows (0 on padding rows and keys)."""
    pm = (mask[:, :, None] * mask[:, None, :]).float()
    return (pm / pm.sum(-1, keepdim=True).clamp_min(1))[:, None, None]


def test_js_divergence_known_values():
    """Rows chosen so that no one-sided KL divergence (to the mixture or to the other row) gives the same numbers:
    the two halves of JS differ (1 vs a uniform row) and a row with a zero where the other has mass stays finite."""
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.3, 0.7], [1.0, 0.0]])
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5], [0.7, 0.3], [0.5, 0.5]])
    expected_third = 0.5 * (0.3 * math.log(0.3 / 0.5) + 0.7 * math.log(0.7 / 0.5)) * 2
    kl_p = math.log(1 / 0.75)  # [1, 0] against the mixture [0.75, 0.25]
    kl_q = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    expected = torch.tensor([math.log(2), 0.0, expected_third, (kl_p + kl_q) / 2])
    assert torch.allclose(js_divergence(p, q), expected, atol=1e-6)
    assert torch.allclose(js_divergence(q, p), expected, atol=1e-6)


def test_js_divergence_equals_scipys_on_random_rows():
    """Against scipy's Jensen-Shannon distance (squared, natural log) on random rows with zeros in them: symmetric,
    between 0 and log 2."""
    from scipy.spatial.distance import jensenshannon

    g = torch.Generator().manual_seed(3)
    p, q = torch.rand(64, 9, generator=g), torch.rand(64, 9, generator=g) ** 4
    p[p < 0.3] = 0  # zeros where the other row has mass
    p, q = p / p.sum(-1, keepdim=True), q / q.sum(-1, keepdim=True)
    expected = torch.tensor(jensenshannon(p.double().numpy(), q.double().numpy(), axis=-1) ** 2, dtype=torch.float32)
    assert torch.allclose(js_divergence(p, q), expected, atol=1e-6)
    assert torch.allclose(js_divergence(q, p), expected, atol=1e-6)
    assert (expected > 0.01).all() and (expected <= math.log(2)).all()


def test_uniform_head_has_maximal_entropy():
    mask = mask_of((3, 2), (5, 2))
    uniform = masked_uniform(mask)
    peaked = torch.zeros_like(uniform)
    peaked[..., 0] = 1  # everything on [CLS]
    stats = attention_statistics(torch.cat([uniform, peaked], dim=2), mask)
    entropy = stats["entropy"][0] / stats["entropy"][1]
    baseline = stats["uniform_entropy"][0] / stats["uniform_entropy"][1]
    # 6 real tokens in each example: every real row of the uniform head has entropy log 6
    assert torch.allclose(entropy[0, 0], torch.tensor(math.log(6)), atol=1e-6)
    assert torch.allclose(baseline[0], torch.tensor(math.log(6)), atol=1e-6)
    assert entropy[0, 1] == 0
    assert stats["entropy"][1] == 6 + 6  # only the real rows count


def test_previous_token_head_puts_all_its_mass_on_offset_minus_one():
    mask = mask_of((3, 2), (8, 0))  # a gap between slots 2 and 5: slot 5's previous real token is slot 2
    previous = torch.zeros(2, 1, 1, L, L)
    for b in range(2):
        real = mask[b].nonzero().flatten().tolist()
        previous[b, 0, 0, real[0], real[0]] = 1
        for before, after in zip(real, real[1:]):
            previous[b, 0, 0, after, before] = 1
    stats = attention_statistics(previous, mask)
    mean = {k: (v[0] / v[1])[0, 0].item() for k, v in stats.items()}
    assert mean["offset_-1"] == pytest.approx(1.0) and mean["offset_+1"] == 0
    assert mean["offset_+0"] == pytest.approx(2 / 14)  # only the first token of each example attends to itself
    assert offset_keys(mask, -1)[0, 5, 2] and not offset_keys(mask, -1)[0, 5, 4]


def test_mass_on_key_groups_and_counts_only_real_rows():
    mask = mask_of((4, 2))
    attention = masked_uniform(mask)  # 6 real keys
    cls = torch.zeros(1, L, dtype=torch.bool)
    cls[0, 0] = True
    sep = torch.zeros(1, L, dtype=torch.bool)
    sep[0, [3, L - 1]] = True
    on_cls = torch.zeros_like(attention)
    on_cls[..., 0] = mask[:, None, None, :].float()  # every real row on [CLS]
    stats = attention_statistics(torch.cat([attention, on_cls], dim=2), mask, {"cls": cls, "sep": sep})
    mass = {name: (stats[f"mass_{name}"][0] / stats[f"mass_{name}"][1])[0] for name in ("cls", "sep")}
    assert mass["cls"].tolist() == pytest.approx([1 / 6, 1.0]) and mass["sep"].tolist() == pytest.approx([2 / 6, 0.0])
    assert stats["entropy"][1] == 6  # six real rows counted


def test_head_equal_to_its_average_scores_zero_and_others_do_not():
    torch.manual_seed(0)
    constants = torch.rand(2, 3, L, L)
    mask = mask_of((3, 2), (8, 0), (2, 5))
    attention = papa_substitute(constants, mask)  # every head attends exactly with its substitute
    sums = score_attention(attention, constants, mask)
    for name in ("input_dependence", "variance"):
        assert torch.all((sums[name][0] / sums[name][1]).abs() < 1e-6)
    attention[:, 1, 2] = masked_uniform(mask)[:, 0, 0]  # one head now differs
    sums = score_attention(attention, constants, mask)
    score = sums["input_dependence"][0] / sums["input_dependence"][1]
    assert score[1, 2] > 1e-3 and (score.flatten()[:5].abs() < 1e-6).all()
    assert sums["input_dependence"][1] == 6 + 8 + 3  # each real row counts once


def test_substitute_rows_sum_to_one_over_real_keys():
    mask = mask_of((3, 2))
    s = papa_substitute(torch.rand(2, 3, L, L), mask)
    assert torch.allclose(s[0, :, :, [0, 1, 2, 5, 6, 7]].sum(-1), torch.ones(2, 3, 6))
    assert s[0, :, :, 3:5].abs().sum() == 0 and s[0, :, :, :, 3:5].abs().sum() == 0


def test_rankings_and_their_agreement():
    scores = torch.tensor([[0.3, 0.1], [0.2, 0.4]])
    assert ranking_from_scores(scores) == [(0, 1), (1, 0), (0, 0), (1, 1)]
    r = random_ranking(3, 4, seed=1)
    assert sorted(r) == [(l, h) for l in range(3) for h in range(4)] and r == random_ranking(3, 4, seed=1)
    assert r != random_ranking(3, 4, seed=2)
    assert ranking_agreement(r, r) == {"spearman": pytest.approx(1.0), "first_half_overlap": 1.0}
    assert ranking_agreement(r, r[::-1]) == {"spearman": pytest.approx(-1.0), "first_half_overlap": 0.0}
    with pytest.raises(ValueError, match="do not list the same heads"):
        ranking_agreement(r, r[:-1] + [(9, 9)])


def batches_of(batch):
    return [batch]


def test_input_dependence_on_a_model_is_zero_against_its_own_attention():
    """Averages over one example are that example's attention: its score is 0; another example's is not."""
    model = tiny_model("bert")
    batch = tiny_batch(16)
    one = {k: v[:1] for k, v in batch.items()}
    averages = compute_average_attention(model, [one], progress=False)
    assert torch.all(input_dependence(model, averages, [one]).abs() < 1e-6)
    other = {k: v[2:] for k, v in batch.items()}
    scores = head_scores(model, averages, [other])
    assert scores["input_dependence"].shape == (LAYERS, HEADS) and scores["input_dependence"].dtype == torch.float32
    assert (scores["input_dependence"] > 1e-4).all() and (scores["variance"] > 0).all()


def test_input_dependence_is_the_mean_js_divergence_of_real_rows_from_the_substitute():
    """``head_scores`` on a model against an independent computation: the Jensen-Shannon divergence of each real
    row of the model's attention from the same row of renorm(C * m m^T) (from scipy's relative entropy, in float64),
    averaged over every real row."""
    from scipy.special import rel_entr

    def jensen_shannon(p, q):
        m = (p + q) / 2
        return (rel_entr(p, m).sum() + rel_entr(q, m).sum()) / 2

    model = tiny_model("bert")
    batch = tiny_batch(16)
    averages = compute_average_attention(model, [batch], progress=False)  # every slot pair has mass
    scores = head_scores(model, averages, [batch])["input_dependence"]
    with torch.no_grad():
        attentions = model(**batch, output_attentions=True).attentions
    mask = batch["attention_mask"]
    substitute = (averages.averages[None] * (mask[:, :, None] * mask[:, None, :])[:, None, None]).double()
    substitute = substitute / substitute.sum(-1, keepdim=True).clamp_min(1e-30)  # [B, layers, heads, L, L]
    for layer, a in enumerate(attentions):
        for head in range(HEADS):
            rows = [(b, i) for b in range(3) for i in range(16) if mask[b, i]]
            js = [jensen_shannon(a[b, head, i].double().numpy(), substitute[b, layer, head, i].numpy())
                  for b, i in rows]
            expected = sum(js) / len(js)  # about 2e-3: one-sided KL to the mixture is about 1.4% off
            assert abs(scores[layer, head].item() - expected) <= 1e-3 * expected, (layer, head)
    assert (scores > 1e-4).all()  # the examples differ from their average


def test_input_dependence_refuses_averages_of_another_model_or_length():
    bert = tiny_model("bert")
    batch = tiny_batch(16)
    averages = compute_average_attention(bert, [batch], progress=False)
    with pytest.raises(AveragesMismatchError, match="built for model 'tiny-bert', not 'tiny-roberta'"):
        input_dependence(tiny_model("roberta"), averages, [batch])
    with pytest.raises(AveragesMismatchError, match="constant matrices have length L=16 but this batch has length 24"):
        input_dependence(bert, averages, [tiny_batch(24)])
    with pytest.raises(AveragesMismatchError, match="constant matrices have length L=16 but this batch has length 24"):
        with replace_heads(bert, averages):  # the same error as head replacement gives
            bert(**tiny_batch(24))


def test_hidden_state_change():
    model = tiny_model("bert")
    batch = tiny_batch(16)
    one = {k: v[:1] for k, v in batch.items()}
    own = compute_average_attention(model, [one], progress=False)  # the example's own attention: no change
    assert hidden_state_change(model, papa_mix(model, own), [one]) < 1e-5
    change_one = hidden_state_change(model, on_heads(uniform, [(0, 0)]), [batch])
    change_all = hidden_state_change(model, on_heads(uniform), [batch])
    assert 0 < change_one < change_all
    # several patches on one unpatched pass: each the number a pass of its own gives, over batches of other sizes
    from papa_utils.core.packing import run_backbone
    from papa_utils.core.replace import patch_attention

    two = [{k: v[:2] for k, v in tiny_batch(16).items()}, {k: v[2:] for k, v in tiny_batch(16).items()}]
    patches = {"one": on_heads(uniform, [(0, 0)]), "all": on_heads(uniform), "own": papa_mix(model, own)}

    def alone(patch):  # the relative change of every real token, pooled over the batches, computed directly
        changes = []
        for b in two:
            with torch.no_grad():
                before = run_backbone(model, b).last_hidden_state
                with patch_attention(model, patch):
                    after = run_backbone(model, b).last_hidden_state
            changes.append(((after - before).norm(dim=-1) / before.norm(dim=-1))[b["attention_mask"].bool()])
        return float(torch.cat(changes).mean())

    together = hidden_state_changes(model, patches, two)
    assert together == {key: pytest.approx(alone(patch), rel=1e-5) for key, patch in patches.items()}
    assert 0 < together["one"] < together["all"]


def test_scores_over_several_batches_weigh_every_real_row_once():
    """Two batches of different real lengths: the score is the mean over all their real rows, not the mean of the
    two batch means."""
    torch.manual_seed(1)
    constants = torch.rand(1, 2, L, L)
    masks = [mask_of((8, 0)), mask_of((2, 5), (2, 5))]  # 8 real rows; 2 x 3 real rows
    attentions = [masked_uniform(m).expand(-1, 1, 2, -1, -1) for m in masks]
    sums = [score_attention(a, constants, m) for a, m in zip(attentions, masks)]
    total = sum(s["input_dependence"][0] for s in sums)
    assert sum(s["input_dependence"][1] for s in sums) == 8 + 6
    per_row = torch.cat([js_divergence(a, papa_substitute(constants, m)).permute(0, 3, 1, 2)[m.bool()]
                         for a, m in zip(attentions, masks)])  # [real rows, layers, heads]
    assert torch.allclose(total / 14, per_row.mean(0), atol=1e-6)


def test_head_scores_accumulate_batches_like_one_batch():
    model = tiny_model("bert")
    batch = tiny_batch(16)
    averages = compute_average_attention(model, [batch], progress=False)
    whole = head_scores(model, averages, [batch])
    parts = head_scores(model, averages, [{k: v[:1] for k, v in batch.items()}, {k: v[1:] for k, v in batch.items()}])
    for name in whole:
        assert torch.allclose(whole[name], parts[name], atol=1e-6)


def test_key_groups_and_statistics_on_a_real_tokenizer(minilm_l3):
    from papa_utils import encode, get_task, TaskSplit
    from papa_utils.teaching.head_stats import head_statistics, key_groups
    import pandas as pd

    model, tokenizer = minilm_l3
    frame = pd.DataFrame({"sentence1": ["It rains, again."], "sentence2": ["Yes!"], "label": [1], "idx": [0]})
    data = encode(TaskSplit(get_task("mrpc"), "validation", frame, "test", "0" * 64), tokenizer, 16)
    groups = key_groups(data.input_ids, data.attention_mask, tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(data.input_ids[0].tolist())
    named = {name: [tokens[i] for i in mask[0].nonzero().flatten().tolist()] for name, mask in groups.items()}
    assert named == {"cls": ["[CLS]"], "sep": ["[SEP]", "[SEP]"], "punctuation": [",", ".", "!"]}
    stats = head_statistics(model, tokenizer, [data.model_inputs()])
    assert stats["mass_cls"].shape == (3, 12)
    total = stats["mass_cls"] + stats["mass_sep"] + stats["mass_punctuation"]
    assert (total <= 1 + 1e-5).all() and (stats["entropy"] <= stats["uniform_entropy"] + 1e-5).all()


@pytest.mark.parametrize("family", ["bert", "mpnet", "roberta"])
def test_recomputed_attention_matches_the_models(family):
    from papa_utils.teaching.head_stats import recompute_attention

    model = tiny_model(family)
    batch = tiny_batch(16, pad_id=1 if family == "roberta" else 0)
    for layer, head in ((0, 0), (1, 5)):
        by_hand, returned = recompute_attention(model, batch, layer, head)
        assert torch.allclose(by_hand, returned, atol=1e-5)


def test_recompute_attention_names_what_it_supports():
    from papa_utils.teaching.head_stats import recompute_attention

    with pytest.raises(NotImplementedError, match="knows BERT-style self-attention and MPNet, not DisentangledSelfAttention"):
        recompute_attention(tiny_model("deberta"), tiny_batch(16), 0, 0)


def test_head_types_follow_their_definitions():
    """Hand-built statistics of six heads, one per type (layer 0) and their mixtures (layer 1)."""
    from papa_utils.teaching.head_stats import head_types

    names = ("entropy", "uniform_entropy", "mass_cls", "mass_sep", "mass_punctuation", "offset_-1", "offset_+0",
             "offset_+1")
    stats = {name: torch.zeros(2, 6) for name in names}
    stats["uniform_entropy"][:] = 2.0
    stats["entropy"][:] = 1.0
    for head, (name, value) in enumerate((("mass_cls", 0.7), ("mass_sep", 0.6), ("offset_-1", 0.8),
                                          ("offset_+1", 0.5), ("offset_+0", 0.9), ("entropy", 1.9))):
        stats[name][0, head] = value
    stats["mass_punctuation"][1, 0], stats["mass_sep"][1, 0] = 0.3, 0.25  # vertical only by their sum
    stats["offset_-1"][1, 1], stats["offset_+1"][1, 1] = 0.3, 0.3  # diagonal only by their sum
    stats["mass_cls"][1, 2], stats["offset_+0"][1, 2] = 0.3, 0.3  # some of both
    stats["mass_cls"][1, 3], stats["offset_+0"][1, 3] = 0.3, 0.1  # too little diagonal: heterogeneous
    stats["entropy"][1, 4] = 1.79  # just below 0.9 of uniform: not broad
    types = head_types(stats)
    assert types["clark"][0] == ["[CLS]", "[SEP]", "previous token", "next token", "current token", "broad"]
    assert types["clark"][1][4] == "other" and types["clark"][1][0] == "other"
    assert types["kovaleva"][0][:5] == ["vertical", "vertical", "diagonal", "diagonal", "diagonal"]
    assert types["kovaleva"][0][5] == "heterogeneous"
    assert types["kovaleva"][1][:4] == ["vertical", "diagonal", "vertical + diagonal", "heterogeneous"]


def test_part_of_speech_attention_against_chance():
    """Hand-built attention of one layer, two heads, on one example with three real tokens: [CLS] (untagged), a
    word tagged 0 and a word tagged 1."""
    from types import SimpleNamespace

    from papa_utils.teaching.head_stats import pos_attention

    a = torch.zeros(1, 2, 4, 4)
    a[0, 0, 0, 1] = a[0, 0, 1, 2] = 1.0  # head 0: [CLS] on the tag-0 word, that word on the tag-1 word,
    a[0, 0, 2, 1] = a[0, 0, 2, 2] = 0.5  # the tag-1 word half on each
    a[0, 1, :3, 0] = 1.0  # head 1: everything on [CLS]
    a[0, :, 3, 1] = 1.0  # the padded query's row (a model fills it too) is no real row: never counted

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, **inputs):
            return SimpleNamespace(attentions=(a,))

    batch = {"input_ids": torch.zeros(1, 4, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 1, 0]]),
             "labels": torch.tensor([[-100, 0, 1, -100]])}
    out = pos_attention(Fixed(), [batch], tags=3)
    assert torch.allclose(out["chance"], torch.tensor([1 / 3, 1 / 3, 0.0]))
    assert torch.allclose(out["mass"][0, 0], torch.tensor([0.5, 0.5, 0.0]))
    assert torch.allclose(out["ratio"][0, 0, :2], torch.tensor([1.5, 1.5])) and out["ratio"][0, 0, 2].isnan()
    assert torch.equal(out["mass"][0, 1], torch.zeros(3))  # all on the untagged [CLS]


def test_the_averages_figures_draw_the_slots_in_use():
    from papa_utils.reports.figures import used_slots

    counts = torch.zeros(6, 6)
    counts.diagonal()[:] = torch.tensor([100.0, 100.0, 4.0, 5.0, 0.0, 100.0])  # slot 2 below 5% of the most used
    assert used_slots(counts) == [0, 1, 3, 5]


def test_a_pairs_rows_own_segment_mass_and_block_heads():
    """Hand-built attention on one pair (slots 0-1 segment A, 2-3 segment B, slot 4 padding): a row's mass on its
    own segment, over real rows only; a head that keeps 80% there is a block head, if nothing else."""
    from papa_utils.teaching.head_stats import head_types

    mask = torch.tensor([[1, 1, 1, 1, 0]])
    segments = torch.tensor([[0, 0, 1, 1, 1]])
    a = torch.zeros(1, 1, 1, 5, 5)
    a[0, 0, 0, :4, :4] = torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.5, 0.3, 0.2, 0.0],
                                       [0.0, 0.4, 0.3, 0.3], [0.25, 0.25, 0.25, 0.25]])
    a[0, 0, 0, 4] = torch.tensor([1.0, 0, 0, 0, 0])  # the padded row, never counted
    total, rows = attention_statistics(a, mask, segments=segments)["mass_own_segment"]
    assert (total / rows).item() == pytest.approx((1.0 + 0.8 + 0.6 + 0.5) / 4)
    stats = {name: torch.zeros(1, 3) for name in ("entropy", "uniform_entropy", "mass_cls", "mass_sep",
                                                  "mass_punctuation", "offset_-1", "offset_+0", "offset_+1")}
    stats["uniform_entropy"][:] = 2.0
    assert head_types(stats)["kovaleva"] == [["heterogeneous"] * 3]  # no segment mass measured: no block
    stats["mass_own_segment"] = torch.tensor([[0.8, 0.79, 0.95]])
    stats["mass_cls"][0, 2] = 0.6  # vertical comes first
    assert head_types(stats)["kovaleva"] == [["block", "heterogeneous", "vertical"]]


def test_head_distances_are_the_mean_js_divergence_between_two_heads_rows_and_map_to_the_plane():
    """Clark et al.'s distance: for two heads, JS between their rows on the same input, averaged over real query
    rows; symmetric with a zero diagonal. The map puts points whose squared distances are given back where they
    were, up to rotation."""
    from papa_utils.teaching.head_stats import head_distances, map_2d
    from papa_utils.core.head_scores import js_divergence
    from papa_utils.core.packing import backbone_batches, run_backbone
    from papa_utils.core.layout import Encoded
    from tiny_models import HEADS, LAYERS, tiny_batch, tiny_model

    model = tiny_model("bert")
    batch = tiny_batch(16)
    data = Encoded(batch["input_ids"], batch["attention_mask"], None, torch.zeros(3, dtype=torch.long))
    distance = head_distances(model, backbone_batches(data, 3, "padded"))
    assert distance.shape == (LAYERS * HEADS, LAYERS * HEADS)
    assert torch.allclose(distance, distance.T) and torch.all(distance.diagonal() == 0)
    attentions = run_backbone(model, next(iter(backbone_batches(data, 3, "padded"))), output_attentions=True).attentions
    real = batch["attention_mask"].bool()
    a, b = attentions[0][:, 2][real], attentions[1][:, 5][real]  # heads (0, 2) and (1, 5), every real row
    assert distance[2, HEADS + 5].item() == pytest.approx(js_divergence(a, b).mean().item(), rel=1e-5)
    plane = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 4.0], [1.0, 1.0]])
    squared = torch.cdist(plane, plane) ** 2
    assert torch.allclose(torch.cdist(map_2d(squared), map_2d(squared)) ** 2, squared, atol=1e-4)


def test_the_cluster_note_compares_heads_within_and_across_layers():
    from papa_utils.teaching.lesson import cluster_notes

    distance = torch.tensor([[0.0, 0.1, 0.5, 0.6], [0.1, 0.0, 0.4, 0.5], [0.5, 0.4, 0.0, 0.2], [0.6, 0.5, 0.2, 0.0]])
    said = cluster_notes(distance, 2, 2)
    assert said.startswith("Two heads of the same layer are 0.150 apart on average, two heads of different layers "
                           "0.500: heads of one layer attend more alike")
    assert said.endswith("The closest pair is (0, 0) and (0, 1) (0.100).")
