"""Figures a reader can read: axes that share one scale across models, and ticks that do not collide."""
import matplotlib
import pytest
import pandas as pd

from papa_utils.reports.figures import plot_learning_curves, plot_performance_vs_dynamic_heads

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


def test_claim_3s_figure_draws_one_line_per_task_and_titles_its_verdict():
    """What the model-level test compares: each task's models joined by one line (the pooled fit only as a faint
    secondary mark), and the verdict with its estimate in the title."""
    from papa_utils.reports.statistics import table1
    from papa_utils.reports.figures import plot_relative_drop_vs_baseline
    from papa_utils.reports.verdicts import check_claims
    from test_verdicts import strength_grid

    r = strength_grid(3, 2)
    claims = check_claims(r, n_boot=100)
    t1 = table1(r, n_boot=100)
    fig = plot_relative_drop_vs_baseline(t1[t1.in_claims], claims)
    ax = fig.axes[0]
    tasks = [line for line in ax.get_lines() if line.get_label().startswith(("t0 ", "t1 "))]
    assert [line.get_label() for line in tasks] == ["t0 (Spearman +1.00)", "t1 (Spearman +1.00)"]
    assert all(len(line.get_xdata()) == 3 for line in tasks)
    assert list(tasks[0].get_xdata()) == sorted(tasks[0].get_xdata())  # across the models, by baseline
    pooled = [line for line in ax.get_lines() if line.get_label().startswith("pooled fit")]
    assert len(pooled) == 1 and pooled[0].get_linestyle() == ":"
    assert ax.get_title() == ("Claim 3, better models lose more: undecided\n(mean within-task Spearman +1.00, "
                              "model-level p = 0.17)")


def test_the_claims_figure_titles_each_claims_verdict_and_estimate(tmp_path):
    """Claims 1 and 2 as their rules read them: one interval per model and the pooled one, each panel titled with
    its verdict and pooled estimate, read from claims.json as written."""
    from papa_utils.reports.figures import plot_claims_1_and_2
    from test_verdicts import two_models_claims

    fig = plot_claims_1_and_2(two_models_claims(tmp_path))
    left, right = fig.axes
    assert left.get_title().startswith("Claim 1, all heads constant: undecided\npooled 16.0% [")
    assert right.get_title().startswith("Claim 2, half of the heads constant: undecided\npooled drop 4.0% [")
    assert [t.get_text() for t in left.get_yticklabels()] == ["a (3 cells)", "b (3 cells)", "all models (6 cells)"]
    shares = [line for line in right.get_lines() if len(line.get_xdata()) == 1 and line.get_linestyle() == "-"]
    assert sorted(round(float(line.get_ydata()[0]), 3) for line in shares) == [0.25, 0.25]


def test_the_claims_figure_says_when_no_cell_carries_signal(tmp_path):
    import json

    from papa_utils.reports.figures import plot_claims_1_and_2
    from papa_utils.records.runs import write_json
    from papa_utils.reports.verdicts import check_claims
    from test_statistics import results

    r = results({("a", "x", 0): [0, 0], ("a", "x", 2): [0, 0], ("a", "x", 4): [0, 0]}, {("a", "x"): (0, [0, 0])})
    claims = json.loads(write_json(tmp_path / "claims.json", check_claims(r, n_boot=20)).read_text())
    left, right = plot_claims_1_and_2(claims).axes
    assert [t.get_text() for t in left.texts] == ["no cell carries signal"]
    assert left.get_title() == "Claim 1, all heads constant: undecided\npooled undefined"


def test_readability_names_each_kind_of_unreadable_figure():
    """Every rule of ``readability_problems`` fails a figure that breaks it, with a sentence that says where."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    from papa_utils.reports.readability import readability_problems

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    assert readability_problems(fig) == ["panel 1 has no title", "panel 1: its x axis has no label",
                                         "panel 1: its y axis has no label"]
    ax.set(title="a line", xlabel="x", ylabel="y")
    assert readability_problems(fig) == []
    ax.set_xticks(np.arange(0, 1, 0.02), [f"tick {i}" for i in range(50)])  # fifty labels on two inches
    ax.tick_params(labelsize=5)
    assert readability_problems(fig) == ["text below 6 pt (5 pt)", "panel 1 (a line): its x tick labels overlap"]
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(4, 2))
    for a in axes:
        sns.heatmap(np.eye(3), ax=a)
        a.set(title="a map", xlabel="key")
    axes[0].set_ylabel("query")  # one label serves the row
    assert readability_problems(fig) == ["a colour bar without a label (its unit)"] * 2
    plt.close(fig)
    fig, axes = plt.subplots(3, 1, figsize=(4, 2.4))  # three short maps whose long colour-bar labels run together
    for a in axes:
        sns.heatmap(np.eye(2), ax=a, cbar_kws={"label": "a long label for a short colour bar"})
        a.set(title="", xlabel="key", ylabel="query")
    fig.suptitle("maps")
    assert readability_problems(fig) == ["labels or titles overlap: 'a long label for a short colour bar' and 'a long "
                                         "label for a short colour bar'"]
    plt.close(fig)
    fig, axes = plt.subplots(3, 1, figsize=(4, 2.4))  # the same labels on switched-off panels are not drawn
    for a in axes:
        a.set(ylabel="a long label for a short panel")
        a.axis("off")
    fig.suptitle("nothing")
    assert readability_problems(fig) == []
    plt.close(fig)


def test_every_figure_of_the_smoke_run_reads_at_its_size(smoke):
    """``save_figure`` records what ``readability_problems`` finds in each PNG: every figure the run saved was
    checked, and none has a problem."""
    from papa_utils.reports.readability import saved_problems

    _, run_dir, _ = smoke
    pngs = sorted((run_dir / "figures").glob("*.png"))
    assert len(pngs) >= 8
    assert {p.name: saved_problems(p) for p in pngs} == {p.name: [] for p in pngs}


@pytest.mark.slow  # notebook 0 through papermill
def test_every_figure_of_the_teaching_notebook_reads_at_its_size(teaching_run):
    from papa_utils.reports.readability import saved_problems

    pngs = sorted((teaching_run / "figures").glob("*.png"))
    assert len(pngs) >= 4
    assert {p.name: saved_problems(p) for p in pngs} == {p.name: [] for p in pngs}


def test_head_maps_are_titled_in_words_with_their_unit_on_the_colour_bar():
    import torch

    from papa_utils.reports.readability import readability_problems
    from papa_utils.teaching.plots import plot_head_map, plot_one_input

    fig = plot_head_map(torch.rand(3, 4), title="mass_cls")
    ax, bar = fig.axes
    assert ax.get_title() == "attention on [CLS]" and bar.get_ylabel() == "share of a row"
    assert readability_problems(fig) == []
    fig = plot_head_map(torch.rand(3, 4), title="input dependence (JS divergence from the substitute)")
    assert fig.axes[1].get_ylabel() == "input dependence (JS divergence from the substitute)"
    attention = torch.rand(2, 4, 6, 6)
    fig = plot_one_input(attention, list("abcde") + [""], [(0, 0), (1, 1)], title="offset_-1 / entropy")
    assert fig._suptitle.get_text() == "attention to the previous token / entropy of a row"
    assert readability_problems(fig) == []


@pytest.mark.parametrize("pair,lines,note", [
    (True, 2, "dashed lines: slots L/2 (a pair's second segment starts) and L-1 (final separator)"),
    (False, 1, "dashed line: slot L-1 (final separator)")])
def test_attention_maps_mark_the_layouts_fixed_slots_of_the_task(pair, lines, note):
    """L/2 starts a pair's second segment only on a pair task; L-1 is the final separator on every task. Each map
    draws one vertical and one horizontal dashed line per marked slot, at its position among the slots drawn."""
    import torch

    from papa_utils.reports.figures import plot_attention_heatmaps
    from papa_utils.reports.readability import readability_problems
    from papa_utils.teaching.plots import plot_average_vs_input

    L = 8
    a = torch.softmax(torch.randn(1, 2, L, L), -1)
    mask = torch.tensor([1, 1, 1, 0, 1, 1, 0, 1])  # slot 3 and 6 padding: L/2 = 4 is drawn 4th (index 3), L-1 6th
    for fig, expected in ((plot_attention_heatmaps(a, a, [(0, 0)], title="t", pair=pair), [4, 7][-lines:]),
                          (plot_average_vs_input(a, a, 0, 1, token_mask=mask, pair=pair), [3, 5][-lines:])):
        maps = [ax for ax in fig.axes if ax.collections and ax.get_label() != "<colorbar>"]
        for ax in maps:
            dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
            assert sorted(float(line.get_xdata()[0]) for line in dashed if len(set(line.get_xdata())) == 1) == expected
        assert fig._supxlabel.get_text() == note and readability_problems(fig) == []
