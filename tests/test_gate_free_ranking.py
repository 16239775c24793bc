"""The teaching notebook and the gate-free rankings in the smoke run (read back from what the notebooks wrote),
and the ranking as a profile parameter."""
import json
import re
from dataclasses import replace

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
import torch

from papa_utils.reports.statistics import read_statistics, statistics_key
from papa_utils.reports.verdicts import average_claim
from papa_utils.core.head_scores import head_scores, ranking_from_scores
from papa_utils.core.metrics import metric_range
from papa_utils.core.backbones import cached_model
from papa_utils.settings.choices import RANKINGS
from papa_utils.settings.profiles import Profile, get_profile
from papa_utils.records.runs import ROOT
from papa_utils.runner.steps import average_attention, encoded, head_ranking, task_data
from papa_utils.reports.tables import (half_heads_table, ranking_agreement_table, ranking_comparison_table,
                                       results_table)
from papa_utils.runner.sweeps import compare_rankings, probe_sweep

PARTIAL = [18, 32, 34]  # minilm-l3: 1/2, 7/8, 15/16 of 36 heads


def test_ranking_comparison_covers_every_ranking_point_and_seed(smoke):
    profile, run_dir, _ = smoke
    table = pd.read_csv(run_dir / "results" / "ranking_comparison.csv")
    assert profile.compare_models == ("minilm-l3",) and profile.random_orders == 2
    expected = {("minilm-l3", t, r, k, s) for t in profile.tasks for k in PARTIAL
                for r, seeds in (("gates", profile.seeds), ("input_dependence", profile.seeds),
                                 ("random0", (42,)), ("random1", (43,)))
                for s in seeds}
    expected |= {("minilm-l3", t, "none", k, s) for t in profile.tasks for k in (0, 36) for s in profile.seeds}
    got = list(table[["model", "task", "ranking", "replaced_heads", "seed"]].itertuples(index=False, name=None))
    assert set(got) == expected and len(got) == len(expected)
    for metric, part in table.groupby("metric"):
        low, high = metric_range(metric)
        assert part.value.between(low, high).all()
    agreement = pd.read_csv(run_dir / "results" / "ranking_agreement.csv")
    assert len(agreement) == len(profile.tasks) * 2
    assert set(agreement.ranking) == {"input_dependence", "random0"}
    assert agreement.spearman.between(-1, 1).all() and agreement.first_half_overlap.between(0, 1).all()
    assert (agreement[agreement.ranking != "random0"].seconds > 0).all()
    assert (agreement[agreement.ranking == "random0"].seconds == 0).all() and (agreement.gates_seconds > 0).all()
    for suffix in (".pdf", ".png"):
        assert (run_dir / "figures" / f"ranking_comparison{suffix}").stat().st_size > 5000


def test_claim_2_under_each_ranking_is_read_from_that_rankings_half(smoke):
    """notebook 6's half_heads_by_ranking.csv, and the same table over every cell (no smoke cell carries signal):
    the gates' rows (the smoke profile's own ranking, the main sweep) are claim 2 as the published results give it;
    every ranking's point estimate is the average relative drop of its own k = 18 points against the baseline, as
    ranking_comparison.csv holds them (the random orders as one ranking, the mean of their seeds)."""
    profile, run_dir, results = smoke
    written = pd.read_csv(run_dir / "results" / "half_heads_by_ranking.csv")
    claims = json.loads((run_dir / "results" / "claims.json").read_text())
    assert claims["cells_in_claims"] == [] and (written.cells == 0).all()
    assert set(written.reason) == {"no cell carries signal"} and list(written.model.unique()) == ["all models",
                                                                                                    "minilm-l3"]
    every_cell = {("minilm-l3", t) for t in profile.tasks}
    table = half_heads_table(run_dir, profile, n_boot=500, cells=every_cell)
    assert list(dict.fromkeys(table.ranking)) == list(dict.fromkeys(written.ranking)) == [
        "gates", "input_dependence", "random"]
    pooled = table[table.model == "all models"].set_index("ranking")
    main = average_claim(results, read_statistics(run_dir / "results"), "half", every_cell, ["minilm-l3"], n_boot=500)
    assert pooled.loc["gates", ["relative_drop", "ci_low", "ci_high"]].tolist() == pytest.approx(
        [main["relative_drop"][k] for k in ("value", "ci_low", "ci_high")])
    assert (pooled.cells == 3).all() and (pooled.dev_resampled_cells == 3).all()
    comparison = pd.read_csv(run_dir / "results" / "ranking_comparison.csv")
    comparison["family"] = comparison.ranking.str.replace(r"random\d+", "random", regex=True)
    means = comparison.groupby(["task", "family", "replaced_heads"]).value.mean()
    for ranking in ("gates", "input_dependence", "random"):
        drops = [(means[t, "none", 0] - means[t, ranking, 18]) / means[t, "none", 0] for t in profile.tasks]
        assert pooled.loc[ranking, "relative_drop"] == pytest.approx(np.mean(drops)), ranking
    assert pooled.relative_drop.nunique() == 3  # the rankings picked different halves
    assert list(pooled.seeds) == ["42, 43"] * 3 and list(pooled["main"]) == [True, False, False]
    # each ranking's interval resamples its own records' dev statistics, read here from the run folder
    records = [json.loads(p.read_text()) for p in sorted((run_dir / "ranking_sweep").glob("*__k18__*.json"))]
    for ranking in ("input_dependence", "random"):
        mine = [r for r in records if r["ranking"].rstrip("0123456789") == ranking]
        swapped = pd.concat([results[results.replaced_heads != 18], results_table(mine)], ignore_index=True)
        statistics = {k: v for k, v in read_statistics(run_dir / "results").items() if "|18|" not in k}
        statistics.update({statistics_key(r["model"], r["task"], "probe", 18, r["seed"]): np.asarray(r["dev_statistics"])
                           for r in mine})
        own = average_claim(swapped, statistics, "half", every_cell, ["minilm-l3"], n_boot=500)["relative_drop"]
        assert pooled.loc[ranking, ["relative_drop", "ci_low", "ci_high"]].tolist() == pytest.approx(
            [own["value"], own["ci_low"], own["ci_high"]]), ranking
    assert half_heads_table(run_dir, replace(profile, compare_models=())).empty  # no model compared


def test_the_agreement_table_holds_the_runs_own_ranking_when_it_is_not_the_gates(smoke, tmp_path):
    """A profile ranked by input dependence that compares the gates and random orders (as cpu-robustness does)
    shows how its own ranking agrees with the gates, beside the compared ones."""
    import shutil

    profile, smoke_dir, _ = smoke
    run_dir = tmp_path / "run"
    for folder in ("averages", "ranking"):  # the smoke run's rankings, made again under the other profile's index
        shutil.copytree(smoke_dir / folder, run_dir / folder)
    own = replace(profile, ranking="input_dependence", compare_rankings=("gates", "random"), compare_models=())
    for task in profile.tasks:
        compare_rankings(run_dir, own, "minilm-l3", task)
    agreement = ranking_agreement_table(run_dir, own)
    assert list(dict.fromkeys(agreement.ranking)) == ["input_dependence", "random0"]
    written = pd.read_csv(smoke_dir / "results" / "ranking_agreement.csv")  # the smoke run's, ranked by the gates
    assert agreement.set_index(["task", "ranking"]).spearman.to_dict() == pytest.approx(
        written.set_index(["task", "ranking"]).spearman.to_dict())


def test_each_ranking_sweep_replaces_the_first_k_heads_of_its_own_ranking(smoke):
    """The cached scores are the input-dependence score of the gates' training examples, and each comparison
    point replaced the first k heads of the ranking built from them (or of its random order)."""
    profile, run_dir, _ = smoke
    scores = json.loads((run_dir / "ranking" / "minilm-l3__sst2__scores.json").read_text())
    model, _ = cached_model("minilm-l3")
    data = task_data("sst2", "train", profile.size("minilm-l3", "rank_examples", "sst2"))
    avg = average_attention(run_dir, profile, "minilm-l3", "sst2")
    again = head_scores(model, avg, encoded("minilm-l3", data, profile.length("sst2")).batches(16))
    assert torch.allclose(torch.tensor(scores["input_dependence"]), again["input_dependence"], atol=1e-6)
    ranking = ranking_from_scores(again["input_dependence"])
    variance = head_ranking(run_dir, profile, "minilm-l3", "sst2", "variance")  # the same cached scores, sorted
    assert [tuple(h) for h in variance["ranking"]] == ranking_from_scores(again["variance"]) != ranking
    random1 = head_ranking(run_dir, profile, "minilm-l3", "sst2", "random", order=1)["ranking"]
    assert random1 != head_ranking(run_dir, profile, "minilm-l3", "sst2", "random", order=0)["ranking"]
    for name, order, seed in (("input_dependence", ranking, 43), ("random1", random1, 43)):
        for k in PARTIAL:
            record = json.loads((run_dir / "ranking_sweep" / f"minilm-l3__sst2__{name}__k{k}__seed{seed}.json").read_text())
            assert [tuple(h) for h in record["heads"]] == order[:k] and record["ranking"] == name


def test_the_main_results_hold_the_gates_ranking_only(smoke):
    _, run_dir, results = smoke
    for path in (run_dir / "probe").glob("*.json"):
        r = json.loads(path.read_text())
        assert r["ranking"] == ("gates" if 0 < r["replaced_heads"] < r["total_heads"] else None), path.name
    assert len(results[(results.replaced_heads == 18) & results.headline]) == 3 * 2  # 3 tasks x 2 seeds, no others


@pytest.mark.parametrize("method", ["input_dependence", "variance"])
def test_the_profiles_ranking_decides_the_main_sweep(data_dir, tmp_path, method):
    """Either score ranking (the smoke run compares input dependence; variance is ranked here) orders the main
    sweep: the heads sorted by the score, the first k replaced."""
    profile = replace(get_profile("smoke", tasks="sst2", ranking=method), seeds=(42,), random_orders=1, epochs=1)
    order = head_ranking(tmp_path, profile, "minilm-l3", "sst2")  # as notebook 3 runs the main sweep
    scores = json.loads((tmp_path / "ranking" / "minilm-l3__sst2__scores.json").read_text())
    assert order["method"] == method and order["ranking"] == ranking_from_scores(torch.tensor(scores[method]))
    [record] = probe_sweep(tmp_path, profile, "minilm-l3", "sst2", [18], order["ranking"])
    assert [tuple(h) for h in record["heads"]] == order["ranking"][:18] and record["ranking"] == method
    assert (tmp_path / "probe" / "minilm-l3__sst2__k18__seed42.json").exists()


def test_unknown_ranking_names():
    message = f"unknown ranking 'gate'; rankings: {', '.join(RANKINGS)}"
    with pytest.raises(ValueError, match=message):
        Profile("x", ("minilm-l3",), ("sst2",), ranking="gate")
    with pytest.raises(ValueError, match=message):
        Profile("x", ("minilm-l3",), ("sst2",), compare_rankings=("gate",))
    with pytest.raises(ValueError, match=message):
        head_ranking("unused", get_profile("smoke"), "minilm-l3", "sst2", "gate")


def executed_outputs(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.slow  # notebook 0 through papermill; its names are checked in-process in tests/test_notebooks.py
def test_teaching_notebook_checks_itself_and_saves_its_figures(teaching_run):
    run_dir = teaching_run
    text = executed_outputs(run_dir / "00_anatomy_of_attention.ipynb")
    for n in (1, 2, 3, 4):  # the exercises ship unsolved, and their checks say so without stopping the notebook
        assert f"exercise {n}: not solved yet" in text
    assert "'max_padding_weight': 0.0" in text and "least input-dependent heads (replaced first)" in text
    for name in ("one_input", "head_statistics", "average_vs_input", "input_dependence"):
        for suffix in (".pdf", ".png"):
            assert (run_dir / "figures" / f"{name}_minilm-l3_mrpc{suffix}").stat().st_size > 5000, name


@pytest.mark.slow  # through papermill; the same refusals in-process: tests/test_notebooks.py
@pytest.mark.parametrize("parameters,message", [
    ({"model": "minilm-l4"}, "not an offline model name (minilm-l3, minilm-l6, mpnet-base)"),
    ({"task": "sst3"}, "unknown task 'sst3'; known tasks: cola, sst2, mrpc"),
])
def test_teaching_notebook_refuses_unknown_names_at_once(data_dir, tmp_path, parameters, message):
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(str(ROOT / "notebooks" / "00_anatomy_of_attention.ipynb"),
                                   str(tmp_path / "out.ipynb"), parameters={**parameters, "run_dir": str(tmp_path)},
                                   cwd=str(ROOT / "notebooks"), progress_bar=False)
    assert message in str(failure.value)
    assert not (tmp_path / "figures").exists()  # it failed before computing anything


def test_gate_ranking_stability_is_measured_with_another_seed_and_a_disjoint_subset(smoke):
    profile, run_dir, _ = smoke
    table = pd.read_csv(run_dir / "results" / "ranking_stability.csv")
    assert len(table) == 2 * len(profile.tasks) and set(table.compared_with) == {"another seed", "disjoint subset"}
    assert table.spearman.between(-1, 1).all() and (table.seconds > 0).all()
    main = json.loads((run_dir / "ranking" / "minilm-l3__sst2.json").read_text())
    seed = json.loads((run_dir / "ranking" / "minilm-l3__sst2__seed43.json").read_text())
    subset = json.loads((run_dir / "ranking" / "minilm-l3__sst2__subset1.json").read_text())
    assert (main["seed"], seed["seed"], subset["seed"]) == (42, 43, 42) and subset["subset"] == 1
    n = profile.size("minilm-l3", "rank_examples", "sst2")
    usual, disjoint = task_data("sst2", "train", n), task_data("sst2", "train", n, skip=n)
    assert not set(usual.frame.idx) & set(disjoint.frame.idx) and len(disjoint) == n
    assert main["data"] == seed["data"] == usual.checksum and subset["data"] == disjoint.checksum
    assert main["gates"] != seed["gates"] and main["gates"] != subset["gates"]


def test_records_left_over_from_other_settings_never_enter_the_comparison(smoke):
    """A sweep record of a ranking the profile no longer compares (here a fourth random order) and a main-sweep
    record of a seed outside the profile stay out of the table."""
    from papa_utils.reports.tables import ranking_comparison_table

    profile, run_dir, _ = smoke
    before = ranking_comparison_table(run_dir, profile)
    source = run_dir / "ranking_sweep" / "minilm-l3__sst2__random1__k18__seed43.json"
    stale = {run_dir / "ranking_sweep" / "minilm-l3__sst2__random3__k18__seed42.json": {"ranking": "random3"},
             run_dir / "probe" / "minilm-l3__sst2__k18__seed7.json": {"ranking": "gates", "seed": 7}}
    try:
        for path, change in stale.items():
            path.write_text(json.dumps({**json.loads(source.read_text()), **change}))
        after = ranking_comparison_table(run_dir, profile)
    finally:
        for path in stale:
            path.unlink()
    pd.testing.assert_frame_equal(before, after)
    assert set(before.ranking) == {"none", "gates", "input_dependence", "random0", "random1"}


def test_a_score_ranking_is_checked_on_a_disjoint_subset_and_has_no_seed(smoke, tmp_path):
    """The cpu profile's path: ranked by input dependence, notebook 6 remakes the ranking from the next
    `rank_examples` (disjoint) and compares; the gates come in only when they are compared."""
    import shutil

    from papa_utils.reports.tables import ranking_stability_table

    def rank_for_stability(run_dir, profile):  # what notebook 6 makes before the table reads it
        for task in profile.tasks:
            compare_rankings(run_dir, profile, "minilm-l3", task)

    profile, smoke_dir, _ = smoke
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_dir / "averages", run_dir / "averages")
    scored = replace(profile, ranking="input_dependence", compare_rankings=())
    rank_for_stability(run_dir, scored)
    table = ranking_stability_table(run_dir, scored)
    assert list(table.ranking.unique()) == ["input_dependence"] and set(table.compared_with) == {"disjoint subset"}
    assert len(table) == len(profile.tasks) and table.spearman.between(-1, 1).all()
    n = profile.size("minilm-l3", "rank_examples", "sst2")
    main = json.loads((run_dir / "ranking" / "minilm-l3__sst2__scores.json").read_text())
    subset = json.loads((run_dir / "ranking" / "minilm-l3__sst2__scores__subset1.json").read_text())
    assert main["data"] == task_data("sst2", "train", n).checksum
    assert subset["data"] == task_data("sst2", "train", n, skip=n).checksum and subset["subset"] == 1
    assert main["input_dependence"] != subset["input_dependence"]  # other examples, other scores
    assert not list((run_dir / "ranking").glob("minilm-l3__sst2.json"))  # no gates were trained
    compared = replace(scored, compare_rankings=("gates",), compare_models=("minilm-l3",), tasks=("sst2",))
    rank_for_stability(run_dir, compared)
    both = ranking_stability_table(run_dir, compared)
    assert list(both.ranking) == ["input_dependence", "gates", "gates"]
    assert list(both.compared_with) == ["disjoint subset", "another seed", "disjoint subset"]


def test_a_profile_that_compares_rankings_compares_them_with_the_gates():
    with pytest.raises(ValueError, match="add 'gates' to compare_rankings \\('variance', 'random'\\), or compare none"):
        replace(get_profile("smoke"), ranking="input_dependence", compare_rankings=("variance", "random"))


def test_main_sweep_points_outside_the_profiles_shares_stay_out_of_the_results(smoke):
    """A point left in the folder by a sweep with more shares of heads (here k = 7/8 for a profile whose sweep now
    stops at 1/2) is not part of the results."""
    from papa_utils.reports.tables import all_results

    profile, run_dir, _ = smoke
    fewer = replace(profile, sweep_fractions=(0, 1 / 2, 1))
    assert set(all_results(run_dir, profile).replaced_heads) == {0, 18, 32, 34, 36}
    assert set(all_results(run_dir, fewer).replaced_heads) == {0, 18, 36}


def test_rankings_compared_at_fewer_points_than_the_main_sweep_are_compared_only_there(smoke, tmp_path):
    """A profile that compares its rankings at 1/2 only (as cpu-robustness does, whose main sweep has the paper's
    five points) trains nothing at 7/8 or 15/16 under the compared rankings, and its comparison table holds no point
    of the main sweep that the rankings lack."""
    import shutil

    profile, smoke_dir, _ = smoke
    run_dir = tmp_path / "run"
    for folder in ("averages", "ranking", "probe", "ranking_sweep"):
        shutil.copytree(smoke_dir / folder, run_dir / folder)
    before = sorted(p.name for p in (run_dir / "ranking_sweep").iterdir())
    half = replace(profile, compare_fractions=(1 / 2,))
    assert half.compare_counts("minilm-l3", 36) == [18] and profile.compare_counts("minilm-l3", 36) == [18, 32, 34]
    for task in profile.tasks:
        index = compare_rankings(run_dir, half, "minilm-l3", task)
        assert index["sweep"] and all("__k18__" in name for name in index["sweep"])
    assert sorted(p.name for p in (run_dir / "ranking_sweep").iterdir()) == before  # every point reused
    assert set(ranking_comparison_table(run_dir, half).replaced_heads) == {0, 18, 36}
    assert set(ranking_comparison_table(smoke_dir, profile).replaced_heads) == {0, 18, 32, 34, 36}


def test_rankings_are_compared_only_at_points_of_the_main_sweep():
    with pytest.raises(ValueError, match=re.escape(
            "compare_fractions (0.5, 0.75) has [0.75], not a partial point of sweep_fractions (0, 0.5, 0.875, 0.9375, "
            "1): the rankings are compared where the main sweep has a point strictly between no head and all of "
            "them")):
        replace(get_profile("smoke"), compare_fractions=(1 / 2, 3 / 4))
    with pytest.raises(ValueError, match=re.escape("compare_fractions (1,) has [1], not a partial point")):
        replace(get_profile("smoke"), compare_fractions=(1,))
    with pytest.raises(ValueError, match=re.escape(
            "compare_fractions is empty: name the shares of heads at which the rankings are compared, or None for "
            "every partial point of the sweep")):
        replace(get_profile("smoke"), compare_fractions=())
    # 15/16 of 8 heads rounds to all of them: no partial point of such a model
    assert replace(get_profile("smoke"), compare_fractions=(1 / 2, 15 / 16)).compare_counts("tiny", 8) == [4]


def test_asking_for_another_ranking_keeps_the_gates_in_the_comparison():
    assert get_profile("smoke").compare_rankings == ("input_dependence", "random")
    assert get_profile("smoke", ranking="input_dependence").compare_rankings == ("gates", "random")
    assert get_profile("smoke", ranking="gates").compare_rankings == ("input_dependence", "random")
    assert get_profile("smoke", ranking="variance").compare_rankings == ("gates", "input_dependence", "random")
    assert get_profile("cpu", ranking="gates").compare_rankings == ()  # it compares none
