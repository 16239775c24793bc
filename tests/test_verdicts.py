"""The rules that turn results into verdicts (synthetic numbers): claim 1 needs its whole interval, claim 2 is read
where full PAPA loses, claim 3 is tested with the models relabelled jointly, the convergence check can fail, and
the sentences about results are generated from claims.json."""
import re
import signal

import numpy as np
import pandas as pd
import pytest

from papa_utils.reports.statistics import statistics_key, table1
from papa_utils.reports.statistics import epoch_rates, tail_slope
from papa_utils.reports.verdicts import FLAT_TAIL, check_claims, model_level_test, strength_verdict
from papa_utils.reports.rendering import claim_statements, findings
from test_statistics import results


def strength_grid(models: int, tasks: int, order=None):
    """`models` models on `tasks` tasks, model i with baseline 50 + 5 i and a relative drop that grows with it (or
    follows `order`, a drop rank per model), clear of their references on every cell."""
    values, refs = {}, {}
    for t in range(tasks):
        for i in range(models):
            base = 50 + 5 * i + t
            rank = i if order is None else order[i]
            values[(f"m{i}", f"t{t}", 0)] = [base, base + 0.5, base - 0.5]
            values[(f"m{i}", f"t{t}", 4)] = [v * (1 - 0.02 * (rank + 1)) for v in (base, base + 0.5, base - 0.5)]
            refs[(f"m{i}", f"t{t}")] = (20, [25, 25.5, 24.5])
    return results(values, refs)


def test_claim_3_relabels_the_models_jointly_so_three_models_never_reach_significance():
    """The same three models in four tasks, each task ordered perfectly: tasks treated as independent would give
    p = 6^-4; a model's drops move together, so there are only 3! relabellings and p = 1/6, and the verdict says
    that no result of this design could reach p < 0.05."""
    claims = check_claims(strength_grid(3, 4), n_boot=100)
    test = claims["strength_model_level"]
    assert test["mean_spearman"] == pytest.approx(1) and test["relabellings"] == 6 and test["exact"]
    assert test["p_greater"] == pytest.approx(1 / 6) and test["smallest_p"] == pytest.approx(1 / 6)
    assert test["verdict"]["verdict"] == "undecided"
    assert test["verdict"]["reason"].endswith("with 3 models the smallest p this design can give is 0.167, so no "
                                              "result could reach p < 0.05")
    assert claims["stronger_models_lose_more"] is None


def dev_statistics_of(grid: pd.DataFrame, sizes: dict) -> dict:
    """Per-example accuracy counts ([correct, 1] per dev example) for every row of `grid`, `sizes[task]` examples,
    as many correct as its value says."""
    statistics = {}
    for r in grid.itertuples():
        correct = np.zeros(sizes[r.task], np.int32)
        correct[:int(round(r.value / 100 * sizes[r.task]))] = 1
        statistics[statistics_key(r.model, r.task, r.predictor, r.replaced_heads, r.seed)] = np.stack(
            [correct, np.ones_like(correct)], axis=1)
    return statistics


def test_claim_3_on_six_models_and_six_tasks_is_exact_and_fast():
    """The paper's grid, 6 models x 6 tasks: the null has 6! = 720 relabellings (not 720^6, which never finishes),
    the perfectly ordered grid reaches p = 1/720 and holds, the reversed one fails. Table 1 and the claims at their
    2,000 bootstrap draws, resampling the dev examples at the sizes of the paper's whole dev splits (CoLA 1,043,
    SST-2 872, MRPC 408, MNLI matched 9,815, NER and POS 3,250 sentences), as notebook 4 would on the paper
    profile, finish within 10 s."""
    def alarm(*_):
        raise TimeoutError("Table 1 and the claims on a 6 x 6 grid did not finish within 10 s")

    grid = strength_grid(6, 6)
    statistics = dev_statistics_of(grid, dict(zip([f"t{t}" for t in range(6)], [1043, 872, 408, 9815, 3250, 3250])))
    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.alarm(10)
        t1 = table1(grid, statistics)
        claims = check_claims(grid, statistics)
        signal.alarm(10)
        reversed_ = check_claims(strength_grid(6, 6, order=[5, 4, 3, 2, 1, 0]))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert t1.dev_resampled.all() and claims["all_heads"]["relative_drop"]["dev_resampled_points"] == 36  # dev too
    test = claims["strength_model_level"]
    assert test["relabellings"] == 720 and test["tasks_measured"] == 6
    assert test["p_greater"] == pytest.approx(1 / 720) and test["verdict"]["verdict"] == "holds"
    assert reversed_["strength_model_level"]["verdict"]["verdict"] == "fails"
    assert reversed_["strength_model_level"]["p_less"] == pytest.approx(1 / 720)


def test_the_joint_relabelling_restricts_to_the_models_a_task_has():
    """A task where one of three models is left out is compared on the other two, under the same relabelling:
    with one task of three models and one of two, ordered, p = 1/6, the mean counts both tasks."""
    t1 = pd.DataFrame({"model": ["a", "b", "c", "a", "c"], "task": ["x", "x", "x", "y", "y"],
                       "baseline": [60, 70, 80, 50, 90], "relative_drop": [.1, .2, .3, .1, .4], "in_claims": True})
    test = model_level_test(t1, {})
    assert test["tasks"]["y"]["spearman"] == pytest.approx(1) and test["tasks_measured"] == 2
    assert test["p_greater"] == pytest.approx(1 / 6)
    # task y reversed: the six relabellings give x's Spearman 1, .5, .5, -.5, -.5, -1; each sends a and c to y in
    # the same order as in x or in the other one, so y's is -1, -1, -1, +1, +1, +1: means 0, -.25, -.25, .25, .25, 0
    reversed_y = model_level_test(t1.assign(relative_drop=[.1, .2, .3, .4, .1]), {})
    assert reversed_y["mean_spearman"] == pytest.approx(0) and reversed_y["p_greater"] == pytest.approx(4 / 6)
    assert reversed_y["p_less"] == pytest.approx(4 / 6) and reversed_y["smallest_p"] == pytest.approx(2 / 6)
    differs = model_level_test(t1, {"x": {"differs": {}}})
    assert differs["tasks"]["x"]["left_out"] == "the models got different training or dev examples or L"
    assert strength_verdict(differs)["verdict"] == "undecided"


def test_more_models_than_the_exact_limit_sample_the_relabellings():
    t1 = pd.DataFrame({"model": [f"m{i}" for i in range(9)], "task": "x", "baseline": np.arange(9.0),
                       "relative_drop": np.arange(9.0) / 10, "in_claims": True})
    test = model_level_test(t1, {}, samples=2000)
    assert not test["exact"] and test["relabellings"] == 2001
    assert test["p_greater"] == pytest.approx(1 / 2001)


def test_claim_2_is_read_where_full_papa_loses_and_a_model_that_loses_nothing_is_uninformative():
    """Model a loses nothing with every head constant (its interval includes 0): at half it cannot test claim 2.
    Model b loses 20% with every head and 10% at half: half of its full-PAPA loss, and claim 2 fails for it."""
    values, refs = {}, {}
    for task in "xyz":
        values[("a", task, 0)], values[("a", task, 2)] = [80, 81, 79], [80, 81, 79]
        values[("a", task, 4)] = [80.5, 80, 79.5]
        values[("b", task, 0)] = [80, 81, 79]
        values[("b", task, 2)] = [72, 72.9, 71.1]
        values[("b", task, 4)] = [64, 64.8, 63.2]
        for model in "ab":
            refs[(model, task)] = (40, [45, 46, 44])
    claims = check_claims(results(values, refs), n_boot=300)
    half = claims["half_heads"]
    assert half["cells"] == ["b x", "b y", "b z"] and half["relative_drop"]["points"] == 3
    assert half["per_model"]["a"]["verdict"]["verdict"] == "uninformative"
    assert half["per_model"]["a"]["verdict"]["reason"].startswith("full PAPA loses nothing measurable on any of its "
                                                                  "3 cell(s) in the claims")
    assert half["per_model"]["b"]["verdict"]["verdict"] == "fails"
    share = half["sweep"]["1/2"]["per_model"]["b"]["share_of_full_loss"]
    assert share["value"] == pytest.approx(0.5) and share["ci_low"] <= 0.5 <= share["ci_high"]
    assert "a" not in half["sweep"]["1/2"]["per_model"]
    said = claim_statements(claims)["half_heads"]
    assert said.startswith("On the 3 cells where full PAPA loses measurably. Per model: a **uninformative**; b 10.0%")
    assert "Share of the full-PAPA loss already lost at 1/2: b 0.50" in said


def test_claim_2_reads_every_partial_point_of_the_sweep_in_order():
    values, refs = {}, {}
    for task in "xy":
        values[("b", task, 0)] = [80, 81, 79]
        for k, drop in ((2, 0.05), (3, 0.10), (4, 0.20)):
            values[("b", task, k)] = [v * (1 - drop) for v in (80, 81, 79)]
        refs[("b", task)] = (40, [45, 46, 44])
    claims = check_claims(results(values, refs), n_boot=200)
    sweep = claims["half_heads"]["sweep"]
    assert list(sweep) == ["1/2", "3/4"]
    assert sweep["3/4"]["share_of_full_loss"]["value"] == pytest.approx(0.5)
    assert sweep["1/2"]["share_of_full_loss"]["value"] == pytest.approx(0.25)


def test_claim_2_names_each_point_by_the_papers_share_whatever_the_models_head_count():
    """MiniLM-L3's 7/8 and 15/16 replace 32 and 34 of its 36 heads (8/9 and 17/18 of them): the sweep still has one
    entry per share of the paper's, each with every model that has the point; a share that rounds to all of a
    model's heads (15/16 of 8) is not a point of it."""
    heads = {"s": 36, "m": 144, "t": 8}
    points = {"s": (0, 18, 32, 34, 36), "m": (0, 72, 126, 135, 144), "t": (0, 4, 7, 8)}
    drops = (0.0, 0.05, 0.10, 0.15, 0.20)
    values, refs = {}, {}
    for model, ks in points.items():
        for task in "xy":
            for i, k in enumerate(ks):
                drop = drops[-1] if k == heads[model] else drops[i]
                values[(model, task, k)] = [v * (1 - drop) for v in (80, 81, 79)]
            refs[(model, task)] = (40, [45, 46, 44])
    table = results(values, refs)
    table["total_heads"] = table.model.map(heads)
    table["dynamic_heads"] = table.total_heads - table.replaced_heads
    sweep = check_claims(table, n_boot=200)["half_heads"]["sweep"]
    assert list(sweep) == ["1/2", "7/8", "15/16"]
    assert sorted(sweep["7/8"]["per_model"]) == ["m", "s", "t"] and sorted(sweep["15/16"]["per_model"]) == ["m", "s"]
    for label, share in (("1/2", 0.25), ("7/8", 0.5), ("15/16", 0.75)):
        assert sweep[label]["per_model"]["s"]["share_of_full_loss"]["value"] == pytest.approx(share)
        assert sweep[label]["share_of_full_loss"]["value"] == pytest.approx(share)
    # a run whose sweep has other shares names its points by them: 0.9 of 36 heads is also 32
    only_s = table[table.model == "s"]
    other = check_claims(only_s[only_s.replaced_heads != 34], n_boot=200, sweep_fractions=(0, 1 / 2, 0.9, 1))
    assert list(other["half_heads"]["sweep"]) == ["1/2", "9/10"]


def test_a_cell_in_the_claims_always_has_contextual_signal_to_lose():
    """One rule decides both: a baseline that clears the attention-free probe by more than its noise, though by less
    than the seed spread, is in the claims and its share of the contextual signal lost is defined."""
    r = results({("a", "x", 0): [48.6, 49.4, 47.8], ("a", "x", 4): [48.9, 49.0, 48.8]},
                {("a", "x"): (33, [47.1, 47.3, 46.9])})
    row = table1(r, n_boot=400).iloc[0]
    assert row.in_claims and row.contextual_note == ""
    assert row.contextual_lost == pytest.approx((48.6 - 48.9) / (48.6 - 47.1))
    left = table1(results({("a", "x", 0): [47, 48, 46], ("a", "x", 4): [47, 47, 47]},
                          {("a", "x"): (33, [47.1, 47.3, 46.9])}), n_boot=400).iloc[0]
    assert not left.in_claims and left.contextual_note == "left out of the claims" and np.isnan(left.contextual_lost)


def test_the_convergence_check_fails_a_curve_that_a_decaying_rate_flattens():
    """Under a linear decay to 0 over 5 epochs the last epoch runs at a tenth of the peak rate: a probe that gains
    2 points per epoch at the peak rate gains 0.2 in its last epoch, which the last-gain rule called flat. The
    tail slope, in epochs at the peak rate, reads 2 and fails it; a flat curve passes; a swing that tilts the fitted
    line (MPNet CoLA's 46.6, 45.4, 46.7, whose last epochs ran at ever smaller rates) fails."""
    rates = epoch_rates(5, "linear")
    assert rates == pytest.approx([0.9, 0.7, 0.5, 0.3, 0.1]) and epoch_rates(3).tolist() == [1, 1, 1]
    done = np.cumsum(rates)
    rising = 60 + 2 * done
    assert rising[-1] - rising[-2] == pytest.approx(0.2) and 0.2 < FLAT_TAIL
    curves = np.stack([rising[2:], [70, 70.05, 70.02], [46.6, 45.4, 46.7]])
    slope = tail_slope(curves, [3, 4, 5], 5, "linear")
    assert slope[0] == pytest.approx(2) and abs(slope[1]) < FLAT_TAIL and abs(slope[2]) > FLAT_TAIL
    assert tail_slope(curves, [3, 4, 5], 5, "constant")[0] == pytest.approx(np.polyfit([3, 4, 5], rising[2:], 1)[0])


def two_models_claims(path) -> dict:
    """claims.json as written for two models on three tasks: a loses 2% with every head constant, b 30%, each a
    quarter of that at half of the heads."""
    import json

    from papa_utils.records.runs import write_json

    values, refs = {}, {}
    for model, drop in (("a", 0.02), ("b", 0.30)):
        for task in "xyz":
            values[(model, task, 0)] = [80, 81, 79]
            values[(model, task, 2)] = [v * (1 - drop / 4) for v in (80, 81, 79)]
            values[(model, task, 4)] = [v * (1 - drop) for v in (80, 81, 79)]
            refs[(model, task)] = (50, [55, 56, 54])
    return json.loads(write_json(path / "claims.json", check_claims(results(values, refs), n_boot=200)).read_text())


def test_the_findings_are_generated_from_claims_json(tmp_path):
    """The README's paragraph is read off claims.json: its numbers and verdicts follow the file, so a change in the
    file changes the sentence."""
    claims = two_models_claims(tmp_path)
    text = findings(claims)
    assert text.startswith("**What it says.** With every head constant, the average relative drop is not one number: "
                           "a 2.0% [2.0, 2.0] over 3 cells, b 30.0% [30.0, 30.0] over 3 cells. Pooled over the 6 cells "
                           "that carry signal it is 16.0% [")  # the models first, then what drives the pooled number
    assert "], and b makes 94% of it; the paper reports 8%." in text
    assert "claim 1 holds for a, fails for b; pooled it is **undecided**." in text
    assert "the share of the full-PAPA loss already lost at half is a 0.25 [0.25, 0.25], b 0.25 [0.25, 0.25]" in text
    assert "**Caveats.** The models (a and b) are not the paper's" in text
    claims["all_heads"]["per_model"]["a"]["verdict"]["verdict"] = "fails"
    assert "claim 1 fails for a and b; pooled it is **undecided**." in findings(claims)
    # a model with no cell that carries signal has no drop to read: it is not named among the verdicts
    claims["all_heads"]["per_model"]["c"] = {"relative_drop": {**claims["all_heads"]["per_model"]["a"]["relative_drop"],
                                                               "points": 0},
                                             "verdict": {"verdict": "undecided", "reason": "no cell carries signal"}}
    assert "claim 1 fails for a and b; pooled it is **undecided**." in findings(claims)


def test_a_stronger_probe_of_the_same_model_is_read_only_where_the_cell_carries_signal():
    """Claim 3 within a model, from a learning curve: the drop rising with the baseline gives +1, falling -1; a cell
    left out of the claims, or whose baseline does not beat a reference at some size, is not read."""
    from papa_utils.reports.verdicts import probe_strength
    from papa_utils.reports.rendering import probe_strength_sentence

    rows = []
    for model, task, drops in (("a", "x", (0.1, 0.2, 0.3)), ("b", "x", (0.3, 0.2, 0.1)), ("c", "x", (0.1, 0.2, 0.3)),
                               ("d", "x", (0.1, 0.2, 0.3))):
        for n, base, drop in zip((1000, 2000, 4000), (60, 65, 70), drops):
            rows.append({"model": model, "task": task, "train_examples": n, "baseline": base if model != "d" else
                         (40 if n == 1000 else base), "relative_drop": drop, "trivial": 30, "attention_free": 50})
    result = probe_strength(pd.DataFrame(rows), left_out={"c x": "floor"})
    assert result["cells"] == {"a x": pytest.approx(1), "b x": pytest.approx(-1)} and result["positive"] == 1
    assert probe_strength_sentence(result, [42]).endswith("positive in 1 of 2 cells (mean +0.00: a x +1.0, b x -1.0); "
                                                         "seed 42, no interval.")


def test_a_learning_curve_on_several_seeds_says_where_the_drop_moves_beyond_their_noise():
    """With three seeds, each seed's change of the drop from the smallest to the largest training size (its
    baseline and PAPA paired by seed) gives a 95% interval (Student's t, 2 degrees of freedom): a clear rise, a clear
    fall, and a change smaller than the seeds' spread; one seed gives no interval."""
    from scipy.stats import t

    from papa_utils.reports.statistics import curve_seed_drops, curve_summary
    from papa_utils.reports.verdicts import probe_strength
    from papa_utils.reports.rendering import probe_strength_sentence

    rows = []
    papa = {"a": ((54, 54.5, 55.5), (48, 48.5, 49.5), (42, 42.5, 43.5)),  # drop 10% -> 30%: grows
            "b": ((42, 42.5, 43.5), (48, 48.5, 49.5), (54, 54.5, 55.5)),  # 30% -> 10%: falls
            "e": ((50, 40, 55), (50, 45, 50), (39, 55, 50))}  # seeds far apart
    for model, per_size in papa.items():
        for n, base, values in zip((1000, 2000, 4000), (60, 62, 64), per_size):
            for seed, v in zip((42, 43, 44), values):
                rows += [{"model": model, "task": "x", "train_examples": n, "configuration": "baseline", "seed": seed,
                          "metric": "accuracy", "value": base + seed - 43},
                         {"model": model, "task": "x", "train_examples": n, "configuration": "PAPA", "seed": seed,
                          "metric": "accuracy", "value": v * (base + seed - 43) / 60},
                         {"model": model, "task": "x", "train_examples": n, "configuration": "attention_free",
                          "seed": seed, "metric": "accuracy", "value": 30}]
            rows.append({"model": model, "task": "x", "train_examples": n, "configuration": "trivial", "seed": None,
                         "metric": "accuracy", "value": 20})
    curve = pd.DataFrame(rows)
    result = probe_strength(curve_summary(curve), seed_drops=curve_seed_drops(curve))
    assert result["moved"] == {"grows": ["a x"], "falls": ["b x"], "within noise": ["e x"]}
    # e: each seed's drop is 1 - v / 60, so its changes are (50 - 39, 40 - 55, 55 - 50) / 60
    changes = np.array([11, -15, 5]) / 60
    e = result["change"]["e x"]
    half = t.ppf(0.975, 2) * changes.std(ddof=1) / np.sqrt(3)
    assert e["seeds"] == 3 and e["change"] == pytest.approx(changes.mean())
    assert [e["ci_low"], e["ci_high"]] == pytest.approx([changes.mean() - half, changes.mean() + half])
    a = result["change"]["a x"]
    assert a["change"] == pytest.approx(0.2) and a["ci_low"] > 0.15
    said = probe_strength_sentence(result, [42, 43, 44])
    assert said.endswith(
        "seeds 42, 43, 44. From 1,000 to 4,000 training examples, the relative drop (its change in percentage "
        f"points, with a 95% interval over the seeds) grows in 1 (a x +20.0 [{100 * a['ci_low']:+.1f}, "
        f"{100 * a['ci_high']:+.1f}]), falls in 1 (b x -20.0 [{100 * result['change']['b x']['ci_low']:+.1f}, "
        f"{100 * result['change']['b x']['ci_high']:+.1f}]) and moves less than the seeds' noise in 1 of 3 "
        "cells."), said
    one = curve[(curve.seed == 42) | curve.seed.isna()]
    single = probe_strength(curve_summary(one), seed_drops=curve_seed_drops(one))
    assert single["moved"] == {} and single["change"]["a x"]["ci_low"] is None and single["change"]["a x"]["seeds"] == 1
    assert probe_strength_sentence(single, [42]).endswith("seed 42, no interval.")


def test_claim_2_by_ranking_calls_a_model_without_a_losing_cell_uninformative():
    from papa_utils.reports.verdicts import half_heads_by_ranking

    r = results({("a", "x", 0): [80, 81, 79], ("a", "x", 2): [80, 81, 79], ("a", "x", 4): [80, 80.5, 79.5]},
                {("a", "x"): (40, [45, 46, 44])})
    table = half_heads_by_ranking({"gates": (r, None)}, set(), ["a"], n_boot=100, in_claims={("a", "x")})
    assert list(table.verdict) == ["uninformative", "uninformative"] and list(table.cells) == [0, 0]
    nothing = half_heads_by_ranking({"gates": (r, None)}, set(), ["a"], n_boot=100)
    assert set(nothing.reason) == {"no cell carries signal"}


def test_a_cell_whose_two_points_have_other_seeds_is_not_paired_into_the_share():
    """The share of the full-PAPA loss pairs each cell's partial and full points on the same seeds; a cell whose
    partial point ran on fewer seeds is left out and counted, never paired on mismatched seeds."""
    values, refs = {}, {}
    for task in "xy":
        values[("b", task, 0)] = [80, 81, 79]
        values[("b", task, 2)] = [72, 72.9, 71.1]
        values[("b", task, 4)] = [64, 64.8, 63.2]
        refs[("b", task)] = (40, [45, 46, 44])
    r = results(values, refs)
    r = r[~((r.task == "y") & (r.replaced_heads == 2) & (r.seed == 2))]  # y's half point lost a seed
    share = check_claims(r, n_boot=200)["half_heads"]["sweep"]["1/2"]["share_of_full_loss"]
    assert share["points"] == 1 and share["unpaired_points"] == 1 and share["value"] == pytest.approx(0.5)


def test_one_seed_without_per_example_counts_gives_no_interval():
    """Nothing is resampled: an interval from such replicates would have no width, so there is none, and full PAPA
    is not read as losing measurably on that cell."""
    r = results({("a", "x", 0): [80], ("a", "x", 2): [76], ("a", "x", 4): [70]}, {("a", "x"): (40, [45])})
    t = table1(r, n_boot=100).iloc[0]
    assert np.isnan(t.relative_drop_low) and np.isnan(t.relative_drop_high)
    claims = check_claims(r, n_boot=100)
    assert claims["half_heads"]["cells"] == [] and np.isnan(claims["all_heads"]["relative_drop"]["ci_low"])


def test_a_model_with_losing_cells_but_no_half_point_is_not_called_uninformative():
    values, refs = {}, {}
    for model in "ab":
        for task in "xy":
            values[(model, task, 0)] = [80, 81, 79]
            values[(model, task, 4)] = [64, 64.8, 63.2]
            refs[(model, task)] = (40, [45, 46, 44])
            if model == "a":
                values[(model, task, 2)] = [72, 72.9, 71.1]
    half = check_claims(results(values, refs), n_boot=100)["half_heads"]
    assert half["per_model"]["b"]["verdict"] == {"verdict": "undecided", "reason": "no cell carries signal"}
    assert half["per_model"]["a"]["verdict"]["verdict"] == "fails"


def test_the_findings_read_well_for_one_model_one_cell_left_out_and_no_task_to_compare(tmp_path):
    import json

    from papa_utils.records.runs import write_json

    r = results({("a", "x", 0): [80, 81, 79], ("a", "x", 4): [72, 73, 71], ("a", "y", 0): [0, 0, 0],
                 ("a", "y", 4): [0, 0, 0]}, {("a", "x"): (40, [45, 46, 44]), ("a", "y"): (0, [0, 0, 0])})
    claims = json.loads(write_json(tmp_path / "claims.json", check_claims(r, n_boot=100)).read_text())
    text = findings(claims)
    assert "not one number" not in text and "summed drop" not in text and "pooled" not in text
    assert "over the 1 cell that carries signal is 10.0% [" in text
    assert re.search(r"claim 1 (\*\*holds\*\*|is \*\*undecided\*\*)\. ", text)
    assert "1 cell is left out because its baseline does not clear its references" in text
    assert "Claim 3 (better models lose more) cannot be tested here: no task has two or more models" in text


def test_claim_2_and_the_sweeps_half_point_give_one_interval_for_one_average():
    """The half point of claim 2's sweep is the average claim 2 states: the same estimate and the same interval,
    pooled and per model."""
    g = np.random.default_rng(3)
    values, refs = {}, {}
    for model in ("a", "b"):
        for task in ("x", "y", "z"):
            base = 80 + g.normal(0, 1, 3)
            values[(model, task, 0)] = list(base)
            values[(model, task, 2)] = list(base * (1 - 0.03 - g.uniform(0, 0.05, 3)))
            values[(model, task, 4)] = list(base * (1 - 0.10 - g.uniform(0, 0.08, 3)))
            refs[(model, task)] = (40, list(50 + g.normal(0, 1, 3)))
    half = check_claims(results(values, refs), n_boot=300)["half_heads"]
    point = half["sweep"]["1/2"]
    assert point["relative_drop"] == half["relative_drop"] and half["relative_drop"]["ci_high"] > \
        half["relative_drop"]["ci_low"]
    assert {m: p["relative_drop"] for m, p in point["per_model"].items()} == {
        m: p["relative_drop"] for m, p in half["per_model"].items()}


def test_the_caveats_name_every_task_that_ties_for_the_most_unflat_curves():
    from papa_utils.reports.rendering import _most_on

    assert _most_on(pd.Series({"ner": 11, "pos": 4})) == " (the most, 11, on ner)"
    assert _most_on(pd.Series({"pos": 5, "ner": 5, "cola": 1})) == " (the most, 5 each, on ner and pos)"


def test_claim_2_says_when_its_cells_could_hardly_have_failed_it():
    """A model whose cells lose 2% with every head constant (interval wholly under 5%) holds claim 2 at half of the
    heads, but the reason says the claim could fail there only by half of the heads losing more than all; a model
    losing 30% with every head and 7.5% at half is read as it is."""
    g = np.random.default_rng(5)
    values, refs = {}, {}
    for model, full, half in (("a", 0.02, 0.005), ("b", 0.30, 0.075)):
        for task in ("x", "y", "z"):
            base = 80 + g.normal(0, 0.3, 3)
            values[(model, task, 0)] = list(base)
            values[(model, task, 2)] = list(base * (1 - half))
            values[(model, task, 4)] = list(base * (1 - full))
            refs[(model, task)] = (40, list(50 + g.normal(0, 1, 3)))
    half = check_claims(results(values, refs), n_boot=300)["half_heads"]
    a, b = half["per_model"]["a"]["verdict"], half["per_model"]["b"]["verdict"]
    assert a["verdict"] == "holds" and re.search(r"; weak evidence: with every head constant these cells lose 2\.0% "
                                                 r"\[[\d.]+, [\d.]+\], under 5% already, so half of the heads could "
                                                 r"fail the claim only by losing more than all of them$", a["reason"])
    assert "weak evidence" not in b["reason"] and "weak evidence" not in half["verdict"]["reason"]
