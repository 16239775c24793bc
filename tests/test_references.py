"""References a baseline is read against, on hand-built cases: trivial predictors, the attention-free probe,
and the measures built on them (share of the signal lost, bootstrap averages)."""
import numpy as np
import pandas as pd
import pytest
import torch

from papa_utils import Encoded, TaskSplit, get_task
from papa_utils.analysis import bootstrap_average, share_lost, table1
from papa_utils.layout import IGNORE
from papa_utils.probe import ProbeConfig, extract_features, train_probe
from papa_utils.references import majority_label, trivial_metrics, trivial_predictions, unigram_tagger
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
    rows = []
    for seed, (base, papa, free, trivial) in enumerate([(80, 70, 60, 50), (82, 72, 61, 50)]):
        for task, shift in (("x", 0), ("y", 19)):  # in y the attention-free probe is as good as the baseline
            for predictor, k, value in (("probe", 0, base), ("probe", 4, papa), ("attention_free", 0, free + shift),
                                        ("trivial", 0, trivial)):
                rows.append({"model": "m", "task": task, "replaced_heads": k, "dynamic_heads": 4 - k, "total_heads": 4,
                             "seed": seed, "metric": "accuracy", "value": value, "headline": True,
                             "predictor": predictor})
    t = table1(pd.DataFrame(rows)).set_index("task")
    assert t.loc["x", "learned_lost"] == pytest.approx(10 / 31) and t.loc["x", "trivial"] == 50
    assert t.loc["x", "contextual_lost"] == pytest.approx(10 / 20.5) and t.loc["x", "contextual_note"] == ""
    assert np.isnan(t.loc["y", "contextual_lost"]) and t.loc["y", "contextual_note"] == "no contextual signal to lose"


def test_bootstrap_average_of_known_points():
    measure = lambda b, p, f: (b - p) / b  # noqa: E731
    same = {("m", t): (np.array([100.0, 100.0]), np.array([90.0, 90.0]), np.full(2, np.nan)) for t in "abc"}
    a = bootstrap_average(same, measure, n=200)
    assert a["value"] == pytest.approx(0.1) and a["ci_low"] == pytest.approx(0.1) and a["ci_high"] == pytest.approx(0.1)
    spread = {("m", "a"): (np.array([100.0, 100.0]), np.array([90.0, 90.0]), np.full(2, np.nan)),
              ("m", "b"): (np.array([100.0, 100.0]), np.array([70.0, 70.0]), np.full(2, np.nan)),
              ("m", "c"): (np.array([0.0, 0.0]), np.array([0.0, 0.0]), np.full(2, np.nan))}
    a = bootstrap_average(spread, lambda b, p, f: (b - p) / b if b > 0 else np.nan, n=500)
    assert a["value"] == pytest.approx(0.2) and a["points"] == 2 and a["undefined_points"] == 1
    assert 0.1 <= a["ci_low"] < 0.2 < a["ci_high"] <= 0.3
