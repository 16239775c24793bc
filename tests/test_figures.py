"""Figures a reader can read: axes that share one scale across models, and ticks that do not collide."""
import matplotlib
import pandas as pd

from papa_utils.figures import plot_learning_curves, plot_performance_vs_dynamic_heads

matplotlib.use("Agg")


def test_models_of_every_size_share_the_axis_of_input_dependent_heads():
    rows = [{"model": m, "task": "sst2", "metric": "accuracy", "dynamic_heads": k, "mean": 80.0, "min": 79.0,
             "max": 81.0} for m, total in (("small", 36), ("large", 144)) for k in (0, total // 2, total)]
    fig = plot_performance_vs_dynamic_heads(pd.DataFrame(rows))
    ax = fig.axes[0]
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1/2", "1"]


def test_learning_curves_have_one_tick_per_training_size():
    rows = [{"model": "m", "task": "cola", "metric": "matthews_corr", "train_examples": n, "baseline": 40.0,
             "PAPA": 30.0, "attention_free": 5.0, "trivial": 0.0, "relative_drop": 0.25, "learned_lost": 0.3}
            for n in (1000, 2000, 4000)]
    fig = plot_learning_curves(pd.DataFrame(rows))
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1,000", "2,000", "4,000"]
        assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))  # no 2x10^3 between them
