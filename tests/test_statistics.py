"""From tidy results to Table 1, relative drops and the strength correlation (synthetic numbers)."""
import json

import numpy as np
import pandas as pd
import pytest

from papa_utils.reports.statistics import bootstrap_correlation, curve_summary, half_heads_change, relative_drop, table1
from papa_utils.reports.rendering import curve_drops_markdown, half_heads_markdown, table1_latex, table1_markdown
from papa_utils.reports.verdicts import check_claims, half_heads_by_ranking
from papa_utils.reports.rendering import claim_statements


def results(values, references=None):
    """values: {(model, task, k): [per-seed values]} with 4 heads in total, headline metric 'accuracy';
    references: {(model, task): (trivial value, [attention-free per-seed values])}."""
    rows = []

    def row(model, task, k, seed, v, predictor="probe", share=0.6):
        rows.append({"model": model, "task": task, "replaced_heads": k, "dynamic_heads": 4 - k, "total_heads": 4,
                     "seed": seed, "metric": "accuracy", "value": v, "headline": True, "predictor": predictor,
                     "prediction_share": share, "train_examples": 100, "dev_examples": 50, "L": 64})

    for (model, task, k), per_seed in values.items():
        for seed, v in enumerate(per_seed):
            row(model, task, k, seed, v)
    for (model, task), (trivial, free) in (references or {}).items():
        for seed, v in enumerate(free):
            row(model, task, 0, seed, v, "attention_free")
            row(model, task, 0, seed, trivial, "trivial", None)
    return pd.DataFrame(rows)


def test_relative_drop_is_the_papers_and_undefined_without_a_positive_baseline():
    assert relative_drop([80.0], [72.0])[0] == pytest.approx(0.1)
    assert relative_drop([50.0], [55.0])[0] == pytest.approx(-0.1)  # a gain is a negative drop
    assert np.isnan(relative_drop([0.0], [0.0])[0]) and np.isnan(relative_drop([-3.0], [1.0])[0])


def test_table1_averages_only_the_cells_whose_baseline_clears_its_references():
    r = results({("a", "x", 0): [80, 82], ("a", "x", 4): [72, 74], ("a", "y", 0): [0, 0], ("a", "y", 4): [0, 0],
                 ("a", "z", 0): [50, 50], ("a", "z", 2): [55, 55], ("a", "z", 4): [45, 45]},
                {("a", "x"): (50, [60, 61]), ("a", "y"): (0, [0, 0]), ("a", "z"): (30, [40, 40])})
    t = table1(r).set_index("task")
    assert t.loc["x", "baseline"] == 81 and t.loc["x", "papa"] == 73
    assert t.loc["x", "relative_drop"] == pytest.approx(8 / 81) and np.isnan(t.loc["y", "relative_drop"])
    assert list(t.in_claims) == [True, False, True]
    assert t.loc["y", "signal_note"].startswith("baseline 0.0 does not clear the trivial predictor (0.0)")
    md = table1_markdown(table1(r))
    assert f"**{100 * (8 / 81 + 0.1) / 2:.1f}%** over 2" in md and "- a y: baseline 0.0 does not clear" in md
    assert "- x: 100 training, 50 dev examples, L 64, for every model" in md
    assert "-- & no" in table1_latex(table1(r))
    half = half_heads_change(r).set_index("task")
    assert list(half.index) == ["z"] and half.loc["z", "relative_drop"] == pytest.approx(-0.1)
    claims = check_claims(r, n_boot=50)
    assert claims["all_heads"]["relative_drop"]["value"] == pytest.approx((8 / 81 + 0.1) / 2)
    assert claims["all_heads"]["relative_drop"]["points"] == 2
    assert list(claims["left_out"]) == ["a y"] and claims["half_heads"]["gains"] == 1
    assert claims["cells_in_claims"] == ["a x", "a z"]


def test_a_floor_cell_is_left_out_of_the_estimate_and_of_every_replicate():
    """A cell at its floor has wild replicates (relative drops of thousands of percent); the claim's average and
    its interval are exactly those of the other cells."""
    from papa_utils.reports.statistics import relative_of, bootstrap_average, point_draws

    good = {("a", t, k): v for t, base in (("x", 80), ("y", 70), ("z", 60))
            for k, v in ((0, [base, base + 2, base - 1]), (4, [base - 8, base - 6, base - 9]))}
    refs = {("a", t): (40, [45, 46, 44]) for t in "xyz"}
    floor = {("a", "w", 0): [0.5, -0.4, 0.1], ("a", "w", 4): [0.2, -0.3, 0.4]}  # an MCC near 0
    r = results({**good, **floor}, {**refs, ("a", "w"): (0, [0.3, 0.0, -0.2])})
    claims = check_claims(r, n_boot=400)
    assert list(claims["left_out"]) == ["a w"]
    others = {c: p for c, p in point_draws(r, None, "all", n=400).items() if c != ("a", "w")}
    assert claims["all_heads"]["relative_drop"] == bootstrap_average(others, relative_of)
    assert claims["all_heads"]["per_model"]["a"]["relative_drop"] == bootstrap_average(others, relative_of)


def test_a_baseline_below_its_attention_free_probe_is_left_out():
    """Above the trivial predictor but not above the same probe without attention (MiniLM-L3 CoLA): no contextual
    signal for PAPA to lose, so the cell is not in the claims, and the reason names that reference."""
    r = results({("a", "x", 0): [4.6, 5.0, 4.2], ("a", "x", 4): [4.0, 4.4, 3.9], ("a", "y", 0): [80, 81, 79],
                 ("a", "y", 4): [75, 76, 74]}, {("a", "x"): (0, [6.6, 6.9, 6.2]), ("a", "y"): (50, [60, 61, 59])})
    claims = check_claims(r, n_boot=200)
    assert claims["cells_in_claims"] == ["a y"]
    assert claims["left_out"]["a x"].startswith("baseline 4.6 does not clear the attention-free probe (6.6)")


def test_claims_are_averaged_per_model_as_well_as_pooled():
    values, refs = {}, {}
    for model, drop in (("a", 0.02), ("b", 0.30)):
        for task in "xyz":
            values[(model, task, 0)] = [80, 81, 79]
            values[(model, task, 2)] = [80 * (1 - drop / 4)] * 3
            values[(model, task, 4)] = [80 * (1 - drop), 81 * (1 - drop), 79 * (1 - drop)]
            refs[(model, task)] = (50, [55, 56, 54])
    claims = check_claims(results(values, refs), n_boot=300)
    per_model = claims["all_heads"]["per_model"]
    assert per_model["a"]["relative_drop"]["value"] == pytest.approx(0.02)
    assert per_model["b"]["relative_drop"]["value"] == pytest.approx(0.30)
    assert claims["all_heads"]["relative_drop"]["value"] == pytest.approx(0.16)
    assert per_model["a"]["verdict"]["verdict"] == "holds" and per_model["b"]["verdict"]["verdict"] == "fails"
    assert claims["half_heads"]["per_model"]["a"]["verdict"]["verdict"] == "holds"
    assert claims["half_heads"]["per_model"]["b"]["verdict"]["verdict"] == "fails"  # 7.5% > 5%
    said = claim_statements(claims)["all_heads"]
    assert said.startswith("Per model: a 2.0% [2.0, 2.0] over 3 cells, **holds**; b 30.0% [30.0, 30.0] over 3 cells, "
                           "**fails**. Pooled **undecided**")
    assert "(parts of the summed drop: b 94%, a 6%)" in said


def test_claim_2_under_another_ranking_swaps_only_the_half_heads_points():
    """Each ranking's claim 2 averages the same cells (those the main results keep) with its own half of the heads:
    the main ranking's row is claims.json's claim 2, another ranking's is computed from its own k = 2 points (here
    a cell left out for its floor stays out under every ranking)."""
    values, refs = {}, {}
    for model, drop in (("a", 0.02), ("b", 0.30)):
        for task in "xyz":
            values[(model, task, 0)] = [80, 81, 79]
            values[(model, task, 2)] = [80 * (1 - drop / 4)] * 3
            values[(model, task, 4)] = [70, 71, 69]
            refs[(model, task)] = (50, [55, 56, 54])
    values[("a", "w", 0)], values[("a", "w", 2)], values[("a", "w", 4)] = [50, 50, 50], [10, 10, 10], [40, 40, 40]
    refs[("a", "w")] = (50, [55, 56, 54])  # a floor cell: left out
    main = results(values, refs)
    other = main.copy()
    half = other.replaced_heads == 2
    other.loc[half, "value"] = other.loc[half, "seed"].map({0: 80, 1: 81, 2: 79}) * 0.88  # every cell loses 12%
    claims = check_claims(main, n_boot=300)
    kept = {tuple(c.split()) for c in claims["cells_in_claims"]}
    assert ("a", "w") not in kept and len(kept) == 6
    table = half_heads_by_ranking({"gates": (main, None), "variance": (other, None)}, kept, ["a", "b"], n_boot=300,
                                  main="gates")
    assert list(table.ranking) == ["gates"] * 3 + ["variance"] * 3 and list(table["main"]) == [True] * 3 + [False] * 3
    assert set(table.seeds) == {"0, 1, 2"}
    assert list(table.model) == ["all models", "a", "b"] * 2
    gates = table.set_index(["ranking", "model"]).loc["gates"]
    expected = claims["half_heads"]
    assert gates.loc["all models", "relative_drop"] == pytest.approx(expected["relative_drop"]["value"])
    assert gates.loc["all models", ["ci_low", "ci_high"]].tolist() == pytest.approx(
        [expected["relative_drop"]["ci_low"], expected["relative_drop"]["ci_high"]])
    assert gates.loc["all models", "cells_gaining"] == expected["gains"] == 0
    for model in "ab":
        assert gates.loc[model, "verdict"] == expected["per_model"][model]["verdict"]["verdict"]
    variance = table.set_index(["ranking", "model"]).loc["variance"]
    assert variance.loc["a", "relative_drop"] == pytest.approx(0.12)
    assert variance.loc["all models", "cells"] == 6 and variance.loc["all models", "verdict"] == "fails"
    assert variance.loc["a", "reason"] == "the 95% interval [12.0, 12.0] lies above a 5% drop"
    said = half_heads_markdown(table)
    assert said.splitlines()[0] == "| half of the heads chosen by | seeds | all models | a | b |"
    assert "| variance | 0, 1, 2 | 12.0% [12.0, 12.0], 6 cells, **fails** | 12.0% [12.0, 12.0], 3 cells, **fails** |" in said
    assert said.splitlines()[2].startswith("| gates (the run's own: claim 2) | 0, 1, 2 | ")
    one = table.assign(cells=[1 if m == "b" else c for m, c in zip(table.model, table.cells)])
    assert "| 12.0% [12.0, 12.0], 1 cell, **fails** |" in half_heads_markdown(one)  # one cell, not "1 cells"
    # a ranking run with one seed is paired with the baseline on that seed only, and says so
    one_seed = other[(other.replaced_heads != 2) | (other.seed == 1)]
    table = half_heads_by_ranking({"random": (one_seed, None)}, kept, ["a", "b"], n_boot=300)
    assert table.seeds.iloc[0] == "1" and table.relative_drop.iloc[0] == pytest.approx(0.12)
    assert table.cells_gaining.iloc[0] == 0
    gaining = other[(other.replaced_heads != 2) | (other.seed == 2)].copy()  # seed 2's baseline is 79: 79.5 gains
    gaining.loc[gaining.replaced_heads == 2, "value"] = 79.5  # on it, though it is below the mean of every seed (80)
    table = half_heads_by_ranking({"random": (gaining, None)}, kept, ["a", "b"], n_boot=300)
    assert table.cells_gaining.iloc[0] == 6 and table.relative_drop.iloc[0] < 0
    assert half_heads_markdown(table.iloc[:0]) == "No ranking was compared with the run's own.\n"


def test_the_short_learning_curve_reads_a_drop_only_where_the_baseline_beats_its_references():
    rows = []
    for n, (base, papa, free, trivial) in {100: (52, 50, 45, 53), 200: (60, 54, 55, 50), 400: (70, 63, 56, 50)}.items():
        for configuration, value in (("baseline", base), ("PAPA", papa), ("attention_free", free), ("trivial", trivial)):
            for model in ("a", "b"):
                rows.append({"model": model, "task": "x", "metric": "accuracy", "train_examples": n,
                             "configuration": configuration, "seed": 0, "value": value})
    summary = curve_summary(pd.DataFrame(rows))
    text = curve_drops_markdown(summary, {"b x": "baseline 70.0 does not clear ..."})
    lines = text.splitlines()
    assert lines[0] == "| model | task | 100 examples | 200 examples | 400 examples |"
    assert lines[2] == "| a | x | — (baseline 52.0 ≤ 53.0)² | 10.0% (baseline 60.0) | 10.0% (baseline 70.0) |"
    assert lines[3] == "| b | x | — (baseline 52.0)¹ | — (baseline 60.0)¹ | — (baseline 70.0)¹ |"
    assert lines[-1].startswith("¹ left out of the claims") and "² at this size" in lines[-1]
    assert "²" not in curve_drops_markdown(summary[summary.train_examples > 100], {})


@pytest.mark.parametrize("low, high, claim, verdict", [
    (0.02, 0.12, "all", "holds"), (0.09, 0.13, "all", "fails"), (-0.05, 0.15, "all", "undecided"),
    (0.075, 0.21, "all", "undecided"), (0.09, 0.115, "all", "holds"), (-0.3, 0.121, "all", "undecided"),
    (-0.02, 0.04, "half", "holds"), (0.06, 0.30, "half", "fails"), (0.01, 0.07, "half", "undecided")])
def test_verdicts_read_the_interval_against_the_papers_numbers(low, high, claim, verdict):
    from papa_utils.reports.verdicts import average_verdict

    said = average_verdict({"value": (low + high) / 2, "points": 6, "ci_low": low, "ci_high": high}, claim)
    assert said["verdict"] == verdict
    assert average_verdict({"value": 0.05, "points": 1, "ci_low": None, "ci_high": None}, claim) == {
        "verdict": "undecided", "reason": "no interval over 1 cell(s) carrying signal"}


def test_degenerate_probes_are_flagged_and_never_read_as_no_signal():
    r = results({("a", "x", 0): [80, 82, 81], ("a", "x", 4): [72, 74, 73]}, {("a", "x"): (50, [50, 50, 50])})
    r.loc[r.predictor == "attention_free", "prediction_share"] = 1.0
    t = table1(r).iloc[0]
    assert t.attention_free_degenerate == 3 and np.isnan(t.contextual_lost)
    assert t.contextual_note == "attention-free probe predicts one class"
    assert "50.0 ± 0.0 (one class on 3 seeds)" in table1_markdown(table1(r))


def test_a_secondary_metric_is_reported_beside_the_headline_outside_the_claims():
    from papa_utils.reports.statistics import derived_statistics

    r = results({("a", "mrpc", 0): [80, 82], ("a", "mrpc", 4): [72, 74]}, {("a", "mrpc"): (50, [60, 61])})
    r["metric"] = "f1"
    accuracy = r.assign(metric="accuracy", headline=False, value=r.value - 10)
    t = table1(pd.concat([r, accuracy], ignore_index=True))
    assert list(t.metric) == ["f1", "accuracy"] and list(t.in_claims) == [True, False]
    assert t.loc[1, "baseline"] == 71 and t.loc[1, "signal_note"].startswith("accuracy, beside the headline metric")
    f1_counts = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])  # tp, fp, fn, tn
    assert derived_statistics("accuracy", "f1", f1_counts).tolist() == [[1, 1], [0, 1], [0, 1], [1, 1]]


def test_a_secondary_metrics_interval_is_resampled_from_its_own_counts():
    """MRPC accuracy's bootstrap reads accuracy from the F1 counts of each dev example: its interval brackets its
    own estimate (read as F1 counts, it would not)."""
    from papa_utils.reports.statistics import statistics_key
    from papa_utils.core.metrics import example_statistics, metric_from_statistics

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    task = __import__("papa_utils").get_task("mrpc")
    rows, stats = [], {}
    for predictor, k, flip in (("probe", 0, 0.15), ("probe", 4, 0.3), ("attention_free", 0, 0.35), ("trivial", 0, None)):
        for seed in (0, 1):
            predictions = np.ones_like(labels) if flip is None else np.where(rng.random(400) < flip, 1 - labels, labels)
            counts = example_statistics(task, "f1", predictions, labels)
            stats[statistics_key("m", "mrpc", predictor, k, seed)] = counts
            for metric, value in (("f1", metric_from_statistics("f1", counts.sum(0))),
                                  ("accuracy", 100 * (predictions == labels).mean())):
                rows.append({"model": "m", "task": "mrpc", "replaced_heads": k, "dynamic_heads": 4 - k, "total_heads": 4,
                             "seed": seed, "metric": metric, "value": float(value), "headline": metric == "f1",
                             "predictor": predictor, "prediction_share": 0.6})
    t = table1(pd.DataFrame(rows), stats, n_boot=400).set_index("metric")
    for metric in ("f1", "accuracy"):
        assert t.loc[metric, "relative_drop_low"] <= t.loc[metric, "relative_drop"] <= t.loc[metric, "relative_drop_high"]


def test_claims_json_is_strict_json(tmp_path):
    from papa_utils.records.runs import write_json

    r = results({("a", "x", 0): [0, 0], ("a", "x", 4): [0, 0]}, {("a", "x"): (0, [0, 0])})
    path = write_json(tmp_path / "claims.json", check_claims(r, n_boot=20))

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    claims = json.loads(path.read_text(), parse_constant=refuse)
    assert claims["all_heads"]["relative_drop"]["ci_low"] is None
    assert claim_statements(claims)["all_heads"] == ("Per model: a **undecided**. Pooled **undecided** (no cell carries "
                                                     "signal): relative drop undefined; share of the learned signal "
                                                     "lost undefined")


def test_bootstrap_correlation_brackets_the_estimate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 2 * x + rng.normal(scale=0.5, size=40)
    c = bootstrap_correlation(x, y, n=300)
    assert 0.9 < c["pearson"]["value"] <= 1 and c["pearson"]["ci_low"] <= c["pearson"]["value"] <= c["pearson"]["ci_high"]
    assert c["spearman"]["ci_low"] > 0.75 and c["points"] == 40
    assert c["spearman"]["ci_low"] <= c["spearman"]["value"] <= c["spearman"]["ci_high"]


def test_dev_curves_show_each_tasks_headline_metric():
    """Metrics read back from JSON come key-sorted (MRPC: accuracy before f1); the curve must be F1's."""
    from papa_utils.reports.figures import plot_dev_curves

    curve = [{"epoch": e, "train_loss": 1.0, "accuracy": 60.0 + e, "f1": 80.0 + e} for e in (1, 2)]
    record = {"model": "m", "task": "mrpc", "seed": 42, "replaced_heads": 0, "total_heads": 4,
              "metrics": {"accuracy": 62.0, "f1": 82.0}, "curve": curve}
    fig = plot_dev_curves([record], ["mrpc"], 42)
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == [81.0, 82.0] and ax.get_ylabel() == "f1"


def test_ranking_verdict_on_a_hand_built_comparison():
    from papa_utils.reports.statistics import ranking_points, ranking_verdict

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
