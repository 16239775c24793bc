"""References a baseline is read against, on hand-built cases: trivial predictors, the attention-free probe,
and the measures built on them (share of the signal lost, bootstrap averages)."""
import numpy as np
import pandas as pd
import pytest
import torch

from papa_utils import Encoded, TaskSplit, get_task
from papa_utils.reports.statistics import bootstrap_average, relative_drop, share_lost, table1
from papa_utils.core.layout import IGNORE
from papa_utils.core.probe import ProbeConfig, train_probe
from papa_utils.core.features import extract_features
from papa_utils.core.references import majority_label, trivial_metrics, trivial_predictions, unigram_tagger
from tiny_models import LAYERS, tiny_model


def split(task, **columns):
    return TaskSplit(get_task(task), "train", pd.DataFrame(columns), "test", "0" * 64)


def sentence_encoded(labels):
    n = len(labels)
    return Encoded(torch.zeros(n, 8, dtype=torch.long), torch.ones(n, 8, dtype=torch.long), None, torch.tensor(labels))


def test_majority_class_of_a_known_split():
    train = split("mrpc", sentence1=["a"] * 5, sentence2=["b"] * 5, label=[1, 0, 1, 1, 0])
    dev = split("mrpc", sentence1=["a"] * 4, sentence2=["b"] * 4, label=[0, 1, 0, 1])
    assert trivial_metrics(train, dev, sentence_encoded([0, 1, 0, 1])) == {"f1": pytest.approx(100 * 2 / 3),
                                                                          "accuracy": 50.0}
    cola = split("cola", sentence=["a"] * 3, label=[0, 0, 1])
    assert trivial_metrics(cola, cola, sentence_encoded([0, 0, 1])) == {"matthews_corr": 0.0}
    assert majority_label([2, 1, 2, 1]) == 1  # ties: the smallest label
    stsb = split("stsb", sentence1=["a"] * 3, sentence2=["b"] * 3, label=[1.0, 2.0, 4.5])
    assert (trivial_predictions(stsb, stsb, sentence_encoded([1.0, 2.0, 4.5])) == pytest.approx(2.5))


def test_unigram_pos_baseline_on_a_three_sentence_corpus():
    # tags: 1 = DT, 2 = NN, 3 = VB; "run" is a noun twice and a verb once; "a" is unknown in training
    train = split("pos", tokens=[["the", "run", "ends"], ["the", "run", "run"], ["dogs", "run"]],
                  pos_tags=[[1, 2, 3], [1, 2, 2], [2, 3]])
    tagger, overall = unigram_tagger(train.frame.tokens, train.frame.pos_tags)
    assert tagger == {"the": 1, "run": 2, "ends": 3, "dogs": 2} and overall == 2
    dev = split("pos", tokens=[["a", "run", "the"]], pos_tags=[[1, 2, 1]])
    # the layout: [CLS] a r ##un the ... [SEP]; labels on first sub-tokens, their word index alongside
    labels = torch.full((1, 8), IGNORE)
    words = torch.full((1, 8), -1)
    labels[0, [1, 2, 4]] = torch.tensor([1, 2, 1])
    words[0, [1, 2, 4]] = torch.tensor([0, 1, 2])
    encoded = Encoded(torch.zeros(1, 8, dtype=torch.long), torch.ones(1, 8, dtype=torch.long), None, labels, words)
    grid = trivial_predictions(train, dev, encoded)
    assert grid[0, [1, 2, 4]].tolist() == [2, 2, 1] and (grid[0, [0, 3, 5, 6, 7]] == IGNORE).all()
    assert trivial_metrics(train, dev, encoded) == {"token_accuracy": pytest.approx(100 * 2 / 3)}
    ner = split("ner", tokens=[["Paris"]], ner_tags=[[5]])
    one = Encoded(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long), None,
                  torch.tensor([[IGNORE, 5, IGNORE, IGNORE]]), torch.tensor([[-1, 0, -1, -1]]))
    assert trivial_metrics(ner, ner, one) == {"entity_f1": 0.0}  # every token O: no entity found


def test_attention_free_probe_sees_level_0_only():
    model = tiny_model("bert")
    task = get_task("sst2")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (40, 16), generator=g)
    data = Encoded(ids, torch.ones(40, 16, dtype=torch.long), None, (ids[:, 1] > 50).long())
    features = extract_features(model, task, data)
    config = ProbeConfig(epochs=2, batch_size=8, levels="embeddings")
    run = lambda f: train_probe(model, task, data, data, config=config, train_features=f, dev_features=f).curve  # noqa
    other_layers = extract_features(model, task, data)
    other_layers.states[:, 1:] = torch.randn_like(other_layers.states[:, 1:].float()).half()
    assert run(features) == run(other_layers)  # levels above 0 do not reach it
    other_embeddings = extract_features(model, task, data)
    other_embeddings.states[:, 0] = torch.randn_like(other_embeddings.states[:, 0].float()).half()
    assert run(features) != run(other_embeddings)
    full = train_probe(model, task, data, data, config=ProbeConfig(epochs=2, batch_size=8), train_features=features,
                       dev_features=features)
    assert full.curve != run(features) and features.states.shape[1] == LAYERS + 1


def test_share_lost_and_its_edge_cases():
    assert share_lost([80.0], [70.0], [60.0])[0] == pytest.approx(0.5)
    assert share_lost([80.0], [60.0], [60.0])[0] == pytest.approx(1.0)  # PAPA fell to the floor
    assert share_lost([80.0], [50.0], [60.0])[0] == pytest.approx(1.5)  # below it
    assert share_lost([80.0], [85.0], [60.0])[0] == pytest.approx(-0.25)  # a gain
    assert np.isnan(share_lost([60.0], [55.0], [60.0])[0])  # baseline at the floor: nothing to lose
    assert np.isnan(share_lost([58.0], [55.0], [60.0])[0])  # below it


def test_table1_marks_points_without_contextual_signal():
    """The share of the contextual signal lost is defined on the cells in the claims (one rule): where the
    attention-free probe is as good as the baseline, the cell is left out of the claims and has no share."""
    rows = []
    for seed, (base, papa, free, trivial) in enumerate([(80, 70, 60, 50), (82, 72, 61, 50)]):
        for task, shift in (("x", 0), ("y", 21)):  # in y the attention-free probe is as good as the baseline
            for predictor, k, value in (("probe", 0, base), ("probe", 4, papa), ("attention_free", 0, free + shift),
                                        ("trivial", 0, trivial)):
                rows.append({"model": "m", "task": task, "replaced_heads": k, "dynamic_heads": 4 - k, "total_heads": 4,
                             "seed": seed, "metric": "accuracy", "value": value, "headline": True,
                             "predictor": predictor})
    t = table1(pd.DataFrame(rows)).set_index("task")
    assert t.loc["x", "learned_lost"] == pytest.approx(10 / 31) and t.loc["x", "trivial"] == 50
    assert t.loc["x", "contextual_lost"] == pytest.approx(10 / 20.5) and t.loc["x", "contextual_note"] == ""
    assert np.isnan(t.loc["y", "contextual_lost"]) and t.loc["y", "contextual_note"] == "left out of the claims"
    assert not t.loc["y", "in_claims"] and t.loc["x", "in_claims"]


def seed_points(values: dict) -> dict:
    """point_draws-like points from per-seed values only (no dev statistics): (baseline, other, floor) arrays."""
    rng = np.random.default_rng(0)
    out = {}
    for point, (base, other, floor) in values.items():
        chosen = rng.integers(0, len(base), (300, len(base)))
        out[point] = {"estimates": np.array([base.mean(), other.mean(), floor.mean()]), "dev_resampled": False,
                      "draws": np.stack([base[chosen].mean(1), other[chosen].mean(1), np.full(300, floor.mean())])}
    return out


def test_bootstrap_average_of_known_points():
    measure = lambda b, p, f: (b - p) / b  # noqa: E731
    same = seed_points({("m", t): (np.array([100.0, 100.0]), np.array([90.0, 90.0]), np.full(2, np.nan)) for t in "abc"})
    a = bootstrap_average(same, measure)
    assert a["value"] == pytest.approx(0.1) and a["ci_low"] == pytest.approx(0.1) and a["ci_high"] == pytest.approx(0.1)
    spread = seed_points({("m", "a"): (np.array([100.0, 100.0]), np.array([90.0, 90.0]), np.full(2, np.nan)),
                          ("m", "b"): (np.array([100.0, 100.0]), np.array([70.0, 70.0]), np.full(2, np.nan)),
                          ("m", "c"): (np.array([0.0, 0.0]), np.array([0.0, 0.0]), np.full(2, np.nan))})
    a = bootstrap_average(spread, lambda b, p, f: np.where(b > 0, (b - p) / np.where(b > 0, b, 1), np.nan))
    assert a["value"] == pytest.approx(0.2) and a["points"] == 2 and a["undefined_points"] == 1
    assert 0.1 <= a["ci_low"] < 0.2 < a["ci_high"] <= 0.3


def toy_results_and_statistics(flipped: int, n: int = 1000, seeds=(1, 2, 3)):
    """One accuracy point: the baseline right on 700 of n dev examples, PAPA the same predictions except `flipped`
    examples it gets wrong; a trivial predictor right on 500. Same predictions for every seed."""
    from papa_utils.reports.statistics import statistics_key

    base = np.zeros(n, dtype=int)
    base[:700] = 1
    papa = base.copy()
    papa[:flipped] = 0
    trivial = np.zeros(n, dtype=int)
    trivial[200:700] = 1
    rows, stats = [], {}
    for seed in seeds:
        for predictor, k, correct in (("probe", 0, base), ("probe", 4, papa), ("trivial", 0, trivial)):
            rows.append({"model": "m", "task": "t", "replaced_heads": k, "dynamic_heads": 4 - k, "total_heads": 4,
                         "seed": seed, "metric": "accuracy", "value": 100 * correct.mean(), "headline": True,
                         "predictor": predictor})
            stats[statistics_key("m", "t", predictor, k, seed)] = np.stack([correct, np.ones(n, dtype=int)], 1)
    return pd.DataFrame(rows), stats


def test_paired_bootstrap_over_dev_examples_has_the_known_answer():
    from papa_utils.reports.statistics import interval, point_draws

    results, stats = toy_results_and_statistics(flipped=0)
    [point] = point_draws(results, stats, "all", n=1000).values()
    assert point["dev_resampled"]
    base, papa, floor = point["draws"]
    assert base.std() > 0.5  # the dev set's own noise: the accuracy moves from replicate to replicate ...
    assert np.array_equal(base, papa)  # ... but PAPA with the same predictions moves with it (paired): drop 0
    assert interval(relative_drop(base, papa)) == (0.0, 0.0)
    # 30 of 1,000 examples flipped: the drop in accuracy is 3 points with a standard error of about sqrt(30)/10
    results, stats = toy_results_and_statistics(flipped=30)
    [point] = point_draws(results, stats, "all", n=4000).values()
    difference = point["draws"][0] - point["draws"][1]
    assert difference.mean() == pytest.approx(3.0, abs=0.05)
    assert difference.std() == pytest.approx(np.sqrt(30) / 10, rel=0.1)
    low, high = interval(difference)
    assert low == pytest.approx(3.0 - 1.96 * np.sqrt(30) / 10, abs=0.25) and high == pytest.approx(
        3.0 + 1.96 * np.sqrt(30) / 10, abs=0.25)
    # without the per-example statistics only the seeds are resampled: identical seeds give no interval at all
    [seeds_only] = point_draws(results, None, "all", n=200).values()
    assert not seeds_only["dev_resampled"] and np.ptp(seeds_only["draws"][0]) == 0
    table = table1(results, stats, n_boot=1000).iloc[0]
    assert table.relative_drop == pytest.approx(3 / 70) and table.relative_drop_low < 3 / 70 < table.relative_drop_high
    assert table.dev_resampled


@pytest.mark.parametrize("task_name,metric", [("sst2", "accuracy"), ("mrpc", "f1"), ("mrpc", "accuracy"),
                                              ("cola", "matthews_corr"), ("mnli", "matthews_corr"),
                                              ("ner", "entity_f1"), ("pos", "token_accuracy")])
def test_per_example_statistics_give_the_metric_of_any_resample(task_name, metric):
    """Summing the rows of a resample gives exactly what compute_metrics says on that resample."""
    from papa_utils.core.metrics import compute_metrics, example_statistics, metric_from_statistics
    from papa_utils.settings.tasks import NER_LABELS, get_task

    task = get_task(task_name)
    rng = np.random.default_rng(0)
    if task.token_task:
        labels = rng.integers(0, len(NER_LABELS) if task_name == "ner" else 17, (60, 12))
        labels[:, 9:] = -100
        labels[::7, 0] = -100
        predictions = np.where(rng.random(labels.shape) < 0.6, labels, rng.integers(0, labels.max() + 1, labels.shape))
        predictions[labels == -100] = -100
    else:
        labels = rng.integers(0, max(task.num_labels, 2), 200)
        predictions = np.where(rng.random(200) < 0.7, labels, rng.integers(0, max(task.num_labels, 2), 200))
    stats = example_statistics(task, metric, predictions, labels)
    assert stats.shape[0] == len(labels)
    for draw in range(5):
        i = rng.integers(0, len(labels), len(labels)) if draw else np.arange(len(labels))
        if metric in task.metrics:
            expected = compute_metrics(task, predictions[i], labels[i])[metric]
        else:  # three-class MCC (MNLI reports accuracy only)
            from sklearn.metrics import matthews_corrcoef
            expected = 100 * matthews_corrcoef(labels[i], predictions[i])
        assert metric_from_statistics(metric, stats[i].sum(0)) == pytest.approx(expected, abs=1e-9)
    many = np.stack([stats[rng.integers(0, len(labels), len(labels))].sum(0) for _ in range(3)])
    assert metric_from_statistics(metric, many).shape == (3,)  # vectorised over draws


def test_point_draws_resample_the_seeds_together():
    """Without dev statistics the replicates are means of seeds drawn with replacement, the same seed indices for
    the baseline and PAPA (a seed whose baseline is high has a high PAPA too: the drop stays 10 points)."""
    from papa_utils.reports.statistics import point_draws

    rows = []
    for seed, base in ((1, 60.0), (2, 70.0), (3, 80.0)):
        for predictor, k, value in (("probe", 0, base), ("probe", 4, base - 10), ("trivial", 0, 50.0)):
            rows.append({"model": "m", "task": "t", "replaced_heads": k, "dynamic_heads": 4 - k, "total_heads": 4,
                         "seed": seed, "metric": "accuracy", "value": value, "headline": True, "predictor": predictor})
    [point] = point_draws(pd.DataFrame(rows), None, "all", n=2000).values()
    base, papa, floor = point["draws"]
    assert base.min() == 60 and base.max() == 80 and 0.2 < (base == 70).mean() < 0.35  # P(mean 70) = 7/27
    assert np.allclose(base - papa, 10) and (floor == 50).all()
    assert point["estimates"].tolist() == [70.0, 60.0, 50.0]


def test_models_on_the_same_dev_set_share_its_resampling():
    """Two models scored on the same dev examples get the same dev weights (their shared dev noise stays in the
    averages), and a point's replicates do not depend on which other points are there."""
    from papa_utils.reports.statistics import point_draws

    results, stats = toy_results_and_statistics(flipped=30)
    other = results.assign(model="m2")
    stats2 = {key.replace("m|", "m2|", 1): value for key, value in stats.items()}
    both = point_draws(pd.concat([results, other], ignore_index=True), {**stats, **stats2}, "all", n=300)
    alone = point_draws(results, stats, "all", n=300)
    assert np.array_equal(both["m", "t"]["draws"], alone["m", "t"]["draws"])
    # identical predictions and identical seeds: the same dev weights give the same baseline replicates
    assert np.array_equal(both["m", "t"]["draws"][2], both["m2", "t"]["draws"][2])  # the floor: seedless


def test_an_interval_with_too_many_undefined_replicates_is_undefined():
    from papa_utils.reports.statistics import interval

    few = np.r_[np.arange(100.0), [np.nan] * 2]
    assert interval(few) == pytest.approx((np.quantile(np.arange(100.0), 0.025), np.quantile(np.arange(100.0), 0.975)))
    many = np.r_[np.arange(100.0), [np.nan] * 10]  # 9% undefined: more than a 2.5% tail
    assert all(np.isnan(interval(many)))
