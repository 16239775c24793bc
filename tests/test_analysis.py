"""From tidy results to Table 1, relative drops and the strength correlation (synthetic numbers)."""
import numpy as np
import pandas as pd
import pytest

from papa_utils.analysis import (bootstrap_correlation, check_claims, half_heads_change, relative_drop, table1,
                                 table1_latex, table1_markdown)


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
    assert "undefined" in md and f"**{100 * (8 / 81 + 0.1) / 2:.1f}%** (over 2; 1 with baseline <= 0 left out)" in md
    assert "-- \\\\" in table1_latex(table1(r))
    half = half_heads_change(r).set_index("task")
    assert list(half.index) == ["z"] and half.loc["z", "relative_drop"] == pytest.approx(-0.1)
    claims = check_claims(r, n_boot=50)
    assert claims["all_heads_average_relative_drop"] == pytest.approx((8 / 81 + 0.1) / 2)
    assert claims["points_with_undefined_drop"] == ["a y"] and claims["half_heads_gains"] == 1


def test_bootstrap_correlation_brackets_the_estimate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 2 * x + rng.normal(scale=0.5, size=40)
    c = bootstrap_correlation(x, y, n=300)
    assert 0.9 < c["pearson"]["value"] <= 1 and c["pearson"]["ci_low"] <= c["pearson"]["value"] <= c["pearson"]["ci_high"]
    assert c["spearman"]["ci_low"] > 0.8 and c["points"] == 40
