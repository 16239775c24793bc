"""The smoke profile end to end (what `make figures PROFILE=smoke` runs), then its results read back."""
import json

import pandas as pd
import pytest

from papa_utils.metrics import metric_range
from papa_utils.pipeline import ROOT, average_attention, get_profile, probe_sweep, run_notebooks, write_results
from papa_utils.probe import replaced_counts


@pytest.fixture(scope="module")
def smoke(data_dir, tmp_path_factory):
    profile = get_profile("smoke")
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    run_notebooks(profile, run_dir)
    return profile, run_dir, pd.read_csv(ROOT / "results" / "smoke" / "probe_results.csv")


def test_every_expected_row_is_present(smoke):
    profile, _, results = smoke
    counts = replaced_counts(36)  # minilm-l3: 3 layers x 12 heads
    assert counts == [0, 18, 32, 34, 36]
    metrics = {"sst2": ["accuracy"], "mrpc": ["f1", "accuracy"], "ner": ["entity_f1"]}
    expected = {(m, t, k, s, metric) for m in profile.models for t in profile.tasks for k in counts
                for s in profile.seeds for metric in metrics[t]}
    got = set(results[["model", "task", "replaced_heads", "seed", "metric"]].itertuples(index=False, name=None))
    assert got == expected
    assert (results.train_examples == 64).all() and (results.dev_examples == 64).all() and (results.L == 32).all()
    assert (results.dynamic_heads == 36 - results.replaced_heads).all()


def test_metrics_lie_in_their_valid_ranges(smoke):
    _, _, results = smoke
    for row in results.itertuples():
        low, high = metric_range(row.metric)
        assert low <= row.value <= high, row


def test_rerun_with_same_seed_gives_identical_numbers_and_k0_is_the_baseline(smoke, tmp_path):
    """A fresh run (new run folder, nothing cached) of the baseline and of a partial configuration
    reproduces the recorded numbers exactly."""
    profile, run_dir, results = smoke
    ranking = json.loads((run_dir / "ranking" / "minilm-l3__mrpc.json").read_text())["ranking"]
    average_attention(tmp_path, profile, "minilm-l3", "mrpc")  # one pass: averages and the baseline's features
    saved = tmp_path / "features" / "minilm-l3__mrpc__k0__train__L32.pt"
    assert saved.exists()
    fresh = probe_sweep(tmp_path, profile, "minilm-l3", "mrpc", [0, 18], ranking)
    assert not saved.exists()  # used by the k = 0 probes, then removed
    for r in fresh:
        for metric, value in r["metrics"].items():
            recorded = results[(results.task == "mrpc") & (results.replaced_heads == r["replaced_heads"])
                               & (results.seed == r["seed"]) & (results.metric == metric)]["value"]
            assert len(recorded) == 1 and recorded.iloc[0] == pytest.approx(value, abs=1e-9), (r, metric)


def test_full_papa_changes_the_features(smoke):
    """Guard against a silently inactive replacement: all-heads-constant results differ from baseline."""
    _, _, results = smoke
    head = results[results.metric == "entity_f1"].set_index(["replaced_heads", "seed"])["value"]
    curves = [json.loads(p.read_text())["curve"] for p in (smoke[1] / "probe").glob("minilm-l3__ner__k*.json")]
    assert len({round(c[-1]["train_loss"], 6) for c in curves}) > 1
    assert head.notna().all()


def test_no_feature_files_are_left_behind(smoke):
    _, run_dir, _ = smoke
    assert (run_dir / "features").is_dir()  # the averages pass did save baseline features
    assert list((run_dir / "features").glob("*")) == []
    run = json.loads((run_dir / "run.json").read_text())
    assert run["feature_cache_gb"]["at_the_end"] == 0 and run["feature_cache_gb"]["largest"] > 0  # notebook 1 saved some


def test_rerun_skips_finished_steps(smoke):
    profile, run_dir, _ = smoke
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "probe").glob("*.json")}
    probe_sweep(run_dir, profile, "minilm-l3", "sst2", [0, 36])
    after = {p: p.stat().st_mtime_ns for p in (run_dir / "probe").glob("*.json")}
    assert before == after


def test_figures_tables_and_metadata_exist(smoke):
    profile, run_dir, _ = smoke
    figures = ROOT / "figures" / "smoke"
    for name in ["performance_vs_dynamic_heads", "relative_drop_vs_baseline", "average_attention_minilm-l3_mrpc"]:
        for suffix in (".pdf", ".png"):
            assert (figures / f"{name}{suffix}").stat().st_size > 5000, name
    table = (ROOT / "results" / "smoke" / "table1.md").read_text()
    assert table.count("| minilm-l3 |") == 3 and "**average**" in table
    assert "\\begin{tabular}" in (ROOT / "results" / "smoke" / "table1.tex").read_text()
    claims = json.loads((ROOT / "results" / "smoke" / "claims.json").read_text())
    assert claims["strength_correlation"]["points"] == 3
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["git_commit"] and meta["packages"]["torch"].startswith("2.13.0")
    assert set(meta["notebook_seconds"]) == {"01_average_attention", "02_probe_baselines",
                                             "03_partial_replacement", "04_model_strength"}
    for name in meta["notebook_seconds"]:
        executed = json.loads((run_dir / f"{name}.ipynb").read_text())
        assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])


def test_unknown_profile_task_and_model_names():
    with pytest.raises(KeyError, match="unknown profile 'fast'; profiles: smoke, cpu, paper"):
        get_profile("fast")
    with pytest.raises(KeyError, match="unknown task 'sst5'"):
        get_profile("smoke", tasks="sst2,sst5")


def test_write_results_is_tidy(smoke):
    profile, run_dir, _ = smoke
    table = write_results(run_dir, profile)
    assert table.groupby(["model", "task", "replaced_heads", "seed", "metric"]).size().max() == 1
    assert table.headline.sum() == len(profile.tasks) * 5 * len(profile.seeds)
