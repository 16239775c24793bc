"""From tidy results to Table 1, relative drops and the strength correlation (synthetic numbers)."""
import numpy as np
import pandas as pd
import pytest

from papa_utils.analysis import (bootstrap_correlation, check_claims, claim_statements, half_heads_change,
                                 relative_drop, table1, table1_latex, table1_markdown)


def results(values):
    """values: {(model, task, k): [per-seed values]} with 4 heads in total, headline metric 'accuracy'."""
    rows = []
    for (model, task, k), per_seed in values.items():
        for seed, v in enumerate(per_seed):
            rows.append({"model": model, "task": task, "replaced_heads": k, "dynamic_heads": 4 - k, "total_heads": 4,
                         "seed": seed, "metric": "accuracy", "value": v, "headline": True})
    return pd.DataFrame(rows)


def test_relative_drop_is_the_papers_and_undefined_without_a_positive_baseline():
    assert relative_drop([80.0], [72.0])[0] == pytest.approx(0.1)
    assert relative_drop([50.0], [55.0])[0] == pytest.approx(-0.1)  # a gain is a negative drop
    assert np.isnan(relative_drop([0.0], [0.0])[0]) and np.isnan(relative_drop([-3.0], [1.0])[0])


def test_table1_uses_seed_means_and_leaves_undefined_points_out_of_the_average():
    r = results({("a", "x", 0): [80, 82], ("a", "x", 4): [72, 74], ("a", "y", 0): [0, 0], ("a", "y", 4): [0, 0],
                 ("a", "z", 0): [50, 50], ("a", "z", 2): [55, 55], ("a", "z", 4): [45, 45]})
    t = table1(r).set_index("task")
    assert t.loc["x", "baseline"] == 81 and t.loc["x", "papa"] == 73
    assert t.loc["x", "relative_drop"] == pytest.approx(8 / 81) and np.isnan(t.loc["y", "relative_drop"])
    md = table1_markdown(table1(r))
    assert "undefined" in md and f"**{100 * (8 / 81 + 0.1) / 2:.1f}%** over 2; 1 left out: baseline <= 0" in md
    assert "-- \\\\" in table1_latex(table1(r))
    half = half_heads_change(r).set_index("task")
    assert list(half.index) == ["z"] and half.loc["z", "relative_drop"] == pytest.approx(-0.1)
    claims = check_claims(r, n_boot=50)
    assert claims["all_heads"]["relative_drop"]["value"] == pytest.approx((8 / 81 + 0.1) / 2)
    assert claims["all_heads"]["relative_drop"]["points"] == 2
    assert claims["all_heads"]["relative_drop"]["undefined_points"] == 1
    assert claims["points_with_undefined_drop"] == ["a y"] and claims["half_heads"]["gains"] == 1


def test_bootstrap_correlation_brackets_the_estimate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 2 * x + rng.normal(scale=0.5, size=40)
    c = bootstrap_correlation(x, y, n=300)
    assert 0.9 < c["pearson"]["value"] <= 1 and c["pearson"]["ci_low"] <= c["pearson"]["value"] <= c["pearson"]["ci_high"]
    assert c["spearman"]["ci_low"] > 0.8 and c["points"] == 40


def test_claim_3_is_read_within_tasks_with_the_pooled_correlation_beside_it():
    # task x and z: the stronger model loses more; task y: it loses less. Pooled over tasks the scales mix:
    # y's large drops at high baselines make the pooled correlation positive whatever happens within tasks.
    values = {}
    for model, (bx, by, bz) in {"a": (50, 90, 20), "b": (60, 91, 30), "c": (70, 92, 40)}.items():
        i = "abc".index(model)
        values[(model, "x", 0)], values[(model, "x", 4)] = [bx], [bx * (1 - 0.01 * (i + 1))]
        values[(model, "y", 0)], values[(model, "y", 4)] = [by], [by * (1 - 0.30 + 0.05 * i)]
        values[(model, "z", 0)], values[(model, "z", 4)] = [bz], [bz * (1 - 0.02 * (i + 1))]
    values[("a", "w", 0)], values[("a", "w", 4)] = [70], [60]  # one model only: nothing to compare
    claims = check_claims(results(values), n_boot=50)
    within = claims["strength_within_tasks"]
    assert within["tasks"]["x"]["spearman"] == pytest.approx(1) and within["tasks"]["y"]["spearman"] == pytest.approx(-1)
    assert within["tasks"]["w"] == {"models": 1, "spearman": None}
    assert within["tasks_measured"] == 3 and within["tasks_where_it_holds"] == 2
    assert claims["stronger_models_lose_more"] is True
    assert claims["pooled_strength_correlation"]["pearson"]["value"] > 0.5  # y's large drops at high baselines
    said = claim_statements(claims)["strength"]
    assert said.startswith("within tasks it holds: the drop grows with the baseline across models in 2 of 3 tasks "
                           "(Spearman per task: x +1.00, y -1.00, z +1.00); pooled over all 10 points")


def test_dev_curves_show_each_tasks_headline_metric():
    """Metrics read back from JSON come key-sorted (MRPC: accuracy before f1); the curve must be F1's."""
    from papa_utils.figures import plot_dev_curves

    curve = [{"epoch": e, "train_loss": 1.0, "accuracy": 60.0 + e, "f1": 80.0 + e} for e in (1, 2)]
    record = {"model": "m", "task": "mrpc", "seed": 42, "replaced_heads": 0, "total_heads": 4,
              "metrics": {"accuracy": 62.0, "f1": 82.0}, "curve": curve}
    fig = plot_dev_curves([record], ["mrpc"], 42)
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == [81.0, 82.0] and ax.get_ylabel() == "f1"


def test_claims_are_stated_even_when_every_drop_is_undefined():
    r = results({("a", "x", 0): [0, 0], ("a", "x", 4): [0, 0]})  # e.g. CoLA at MCC 0
    said = claim_statements(check_claims(r, n_boot=20))
    assert said["all_heads"] == "relative drop undefined; share of the learned signal lost undefined"


def test_ranking_verdict_on_a_hand_built_comparison():
    from papa_utils.analysis import ranking_points, ranking_verdict

    rows = []
    for task, gates, dependence, randoms in (("a", [50, 52, 54], [51, 51, 51], [40, 42]),
                                             ("b", [60, 60, 60], [57, 58, 59], [60, 64])):
        for seed, (g, d) in enumerate(zip(gates, dependence)):
            rows += [dict(ranking="gates", seed=seed, replaced_heads=2, value=g),
                     dict(ranking="input_dependence", seed=seed, replaced_heads=2, value=d),
                     dict(ranking="none", seed=seed, replaced_heads=0, value=70),
                     dict(ranking="none", seed=seed, replaced_heads=4, value=30)]
        rows += [dict(ranking=f"random{i}", seed=i, replaced_heads=2, value=v) for i, v in enumerate(randoms)]
        for r in rows[-(3 * 4 + len(randoms)):]:
            r.update(model="m", task=task, total_heads=4, dynamic_heads=4 - r["replaced_heads"], metric="accuracy")
    comparison = pd.DataFrame(rows)
    points = ranking_points(comparison)
    # every family's line runs through the shared ends
    assert set(points[points.replaced_heads == 0].family) == {"gates", "input_dependence", "random"}
    random_a = points[(points.family == "random") & (points.task == "a") & (points.replaced_heads == 2)].iloc[0]
    assert (random_a["mean"], random_a["min"], random_a["max"], random_a["count"]) == (41, 40, 42, 2)
    verdict = ranking_verdict(comparison, n_boot=200).set_index("ranking")
    # task a: 51 - 52 = -1, as good (51 >= the gates' worst seed, 50); task b: 58 - 60 = -2, not (58 < 60)
    assert verdict.loc["input_dependence", "mean_difference"] == pytest.approx(-1.5)
    assert verdict.loc["input_dependence", "as_good_as_gates"] == 1 and verdict.loc["input_dependence", "points"] == 2
    assert verdict.loc["input_dependence", "ci_low"] == pytest.approx(-2) and verdict.loc["input_dependence", "ci_high"] == pytest.approx(-1)
    # random: a 41 - 52 = -11 (not as good), b 62 - 60 = +2 (as good)
    assert verdict.loc["random", "mean_difference"] == pytest.approx(-4.5)
    assert verdict.loc["random", "as_good_as_gates"] == 1
