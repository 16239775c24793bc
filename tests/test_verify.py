"""`make verify`: the comparison of a recomputed slice with the published rows, and its stated tolerance."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from papa_utils.runner.verify import compare_rows, report, same_machine_kind


SLICE = (["a"], ["x"])


def rows(values):
    return pd.DataFrame([{"model": m, "task": t, "predictor": "probe", "replaced_heads": k, "seed": 42,
                          "metric": "accuracy", "value": v} for (m, t, k), v in values.items()])


def test_a_slice_is_compared_row_by_row_with_the_published_table():
    published = rows({("a", "x", 0): 80.0, ("a", "x", 4): 70.0, ("a", "y", 0): 60.0, ("b", "x", 0): 50.0})
    same = compare_rows(published, rows({("a", "x", 0): 80.0, ("a", "x", 4): 70.0}), 0.0, *SLICE)
    assert len(same) == 2 and same.ok.all()  # the slice only: a y and b x are not asked for
    moved = compare_rows(published, rows({("a", "x", 0): 80.0, ("a", "x", 4): 70.0 + 1e-9}), 0.0, *SLICE)
    assert list(moved.ok) == [True, False] and "largest difference 1e-09 points" in report(moved, 0.0, True)
    assert compare_rows(published, rows({("a", "x", 0): 80.0, ("a", "x", 4): 70.4}), 0.5, *SLICE).ok.all()
    missing = compare_rows(published, rows({("a", "x", 0): 80.0}), 0.0, *SLICE)  # a published row not recomputed
    assert list(missing.ok) == [True, False]
    extra = compare_rows(published, rows({("a", "x", 0): 80.0, ("a", "x", 4): 70.0, ("a", "x", 2): 75.0}), 0.0, *SLICE)
    assert not extra.ok.all()  # a recomputed row the published table lacks
    undefined = compare_rows(rows({("a", "x", 0): np.nan}), rows({("a", "x", 0): np.nan}), 0.0, *SLICE)
    assert undefined.ok.all()
    nothing = compare_rows(published, published.iloc[:0], 0.0, *SLICE)
    assert not nothing.ok.all()  # the published rows of the slice, none recomputed
    assert report(compare_rows(published, published, 0.0, ["c"], ["x"]), 0.0, True).startswith(
        "verify: no row to compare")


def test_exact_only_on_the_kind_of_machine_the_run_was_published_from():
    run = {"packages": {"torch": "2.13.0+cpu"},
           "precision_choice": {"m": {"choice": "bf16", "processor": "AMD EPYC"}}}
    assert same_machine_kind(run, run)
    other_cpu = {**run, "precision_choice": {"m": {"choice": "bf16", "processor": "Intel Xeon"}}}
    fp32 = {**run, "precision_choice": {"m": {"choice": "fp32", "processor": "AMD EPYC"}}}
    torch = {**run, "packages": {"torch": "2.14.1"}}
    assert not any(same_machine_kind(run, here) for here in (other_cpu, fp32, torch))
    table = compare_rows(rows({("a", "x", 0): 80.0}), rows({("a", "x", 0): 80.3}), 1.0, *SLICE)
    assert report(table, 1.0, False).startswith("verify: 1 rows compared, 1 within 1 metric points (another kind of "
                                                "machine than the published run's)")


def test_a_run_published_with_other_settings_is_not_verified(monkeypatch):
    """A published run made with settings the profile no longer has cannot be computed again here: verify says which
    settings differ (a setting the run did not record counts at its default) instead of comparing rows."""
    from dataclasses import asdict, replace

    from papa_utils.settings import profiles
    from papa_utils.runner.verify import changed_settings

    now = replace(profiles.PROFILES["cpu"], probe_batch_size=64, probe_lr=6e-4)  # a profile changed since
    monkeypatch.setitem(profiles.PROFILES, "cpu", now)
    recorded = json.loads(json.dumps(asdict(now)))
    assert changed_settings(recorded, "cpu") == {}
    older = {k: v for k, v in recorded.items() if k != "probe_batch_size"} | {"probe_lr": 2e-4}
    assert changed_settings(older, "cpu") == {"probe_batch_size": (16, 64), "probe_lr": (2e-4, 6e-4)}
    assert changed_settings({**recorded, "models": ["minilm-l3"]}, "cpu") == {}  # a narrowed run is the same computation


def test_verify_stops_before_computing_a_run_made_with_other_settings(tmp_path, monkeypatch):
    from dataclasses import asdict

    from papa_utils.runner import verify
    from papa_utils.settings.profiles import PROFILES

    published = tmp_path / "results" / "cpu"
    published.mkdir(parents=True)
    (published / "probe_results.csv").write_text("model,task\n")
    profile = json.loads(json.dumps(asdict(PROFILES["cpu"])))
    other = profile["probe_batch_size"] * 4
    (published / "run.json").write_text(json.dumps({"profile": {**profile, "probe_batch_size": other}}))
    monkeypatch.setattr(verify, "ROOT", tmp_path)
    monkeypatch.setattr("papa_utils.runner.pipeline.main", lambda argv: pytest.fail("verify computed"))
    with pytest.raises(SystemExit, match=re.escape(
            f"results/cpu/ was made with other settings than the cpu profile has now (probe_batch_size: {other} then, "
            f"{profile['probe_batch_size']} now): computing it again here would not be the same computation.")):
        verify.main([])
