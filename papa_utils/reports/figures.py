"""One shared figure style; every figure saved as PDF (papers) and PNG (README), atomically."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from ..records.runs import atomic_path  # noqa: E402
from .readability import MIN_FONT_PT, READABILITY_KEY, readability_problems  # noqa: E402
from ..settings.tasks import get_task  # noqa: E402

COLUMN_WIDTH, FULL_WIDTH = 3.0, 6.3  # ACL single column / full width, inches


def set_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 150, "savefig.bbox": "tight", "pdf.fonttype": 42})


def save_figure(fig, path_without_suffix: str | Path) -> None:
    """Write `<path>.pdf` and `<path>.png`, and in a notebook show the PNG in the cell's output (at its own size,
    the figure's inches at ``figure.dpi``), so that an executed notebook carries its figures. The PNG records what
    ``readability_problems`` found in the figure (a JSON list, empty when it is readable), and any problem is
    logged."""
    import json
    import logging

    base = Path(path_without_suffix)
    problems = readability_problems(fig)
    if problems:
        logging.getLogger("papa_utils").warning(f"{base.name}: " + "; ".join(problems))
    paths = []
    for suffix in (".pdf", ".png"):
        target = base.with_suffix(suffix)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=suffix[1:],
                        **({"metadata": {READABILITY_KEY: json.dumps(problems)}} if suffix == ".png" else {}))
        paths.append(target)
    _show_in_notebook(paths[1])
    plt.close(fig)


def show_figure(fig) -> None:
    """Show a figure that is not saved in the notebook's output (as PNG, like the saved ones); elsewhere nothing."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _show_in_notebook(buffer.getvalue())
    plt.close(fig)


def _show_in_notebook(png) -> None:
    """Display a saved PNG when running in a notebook kernel (the figures draw on the non-interactive backend, so
    nothing else would show them); elsewhere, nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or "ZMQ" not in type(shell).__name__:
        return
    from IPython.display import Image, display

    display(Image(data=png) if isinstance(png, bytes) else Image(filename=str(png)))


USED_SLOT_SHARE = 0.05  # a slot drawn in the averages' figures holds a real token in at least this share of inputs


def plot_head_ranking(values, method: str, model_name: str, task: str):
    """What ranked the heads of one model and task, as a [layers, heads] map: the trained gates (low: the head
    leans on its constant matrix) or a ranking's score (low: replaced first)."""
    import numpy as np

    set_style()
    values = np.asarray(values, dtype=float)
    unit = ("gate (low: leans on its constant matrix)" if method == "gates"
            else f"{method.replace('_', ' ')} (low: replaced first)")
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 0.35 * len(values) + 1.0))
    sns.heatmap(values, ax=ax, cmap="coolwarm" if method == "gates" else "viridis",
                center=0 if method == "gates" else None, cbar_kws={"label": unit})
    ax.set(xlabel="head", ylabel="layer", title=f"what ranked the heads: {model_name}, {task}")
    return fig


def used_slots(counts) -> list[int]:
    """The slots of the layout that hold a real token in at least ``USED_SLOT_SHARE`` of the averaged inputs
    (``AttentionAverages.counts``, [L, L] pairs of real tokens: its diagonal counts each slot), in slot order."""
    filled = counts.diagonal()
    return (filled >= USED_SLOT_SHARE * filled.max()).nonzero().flatten().tolist()


def fixed_slots(length: int, pair: bool) -> tuple[list[int], str]:
    """The layout's fixed slots worth marking on an L x L attention map, and the note that names them: L/2, where a
    pair's second segment starts (pair tasks only), and L-1, the final separator (``core.layout``)."""
    if pair:
        return [length // 2, length - 1], ("dashed lines: slots L/2 (a pair's second segment starts) and L-1 (final "
                                           "separator)")
    return [length - 1], "dashed line: slot L-1 (final separator)"


def plot_attention_heatmaps(averages, example, heads, tokens=None, title="", slots=None, pair=True):
    """Average attention (top row) next to one real example's attention (bottom row) for a few heads, on one
    colour scale (attention weight) shared by every panel, with the layout's fixed slots marked (``fixed_slots``:
    L/2, where a pair's second segment starts, for a `pair` task, and L-1, the final separator).

    averages: [layers, heads, L, L]; example: [layers, heads, L, L] of one input; heads: [(layer, head)];
    tokens: optional list of L token strings (padding shown as blank); `slots`: the slots to draw (default all;
    ``used_slots`` leaves out those that are padding on nearly every input).
    """
    set_style()
    length = averages.shape[-1]
    slots = list(range(length)) if slots is None else list(slots)
    fixed, note = fixed_slots(length, pair)
    marked = [slots.index(s) for s in fixed if s in slots]
    shown = {(row, col): matrix[layer, head][slots][:, slots].numpy()
             for col, (layer, head) in enumerate(heads) for row, matrix in enumerate((averages, example))}
    top = max(float(m.max()) for m in shown.values()) or 1.0
    fig, axes = plt.subplots(2, len(heads), figsize=(FULL_WIDTH, 3.3), squeeze=False, layout="constrained")
    used = "" if len(slots) == length else " in use"
    for (row, col), matrix in shown.items():
        ax = axes[row, col]
        sns.heatmap(matrix, ax=ax, cmap="viridis", vmin=0, vmax=top, cbar=False, square=True,
                    xticklabels=False, yticklabels=False)
        for position in marked:
            ax.axvline(position, color="w", lw=0.5, ls="--")
            ax.axhline(position, color="w", lw=0.5, ls="--")
        layer, head = heads[col]
        ax.set_title(f"layer {layer}, head {head}" if row == 0 else "", fontsize=7)
        ax.set_ylabel(f"{('average', 'one example')[row]}\nquery slot{used}" if col == 0 else "", fontsize=7)
        ax.set_xlabel(f"key slot{used}" if row == 1 else "", fontsize=7)
    fig.colorbar(axes[0, 0].collections[0], ax=axes, shrink=0.8, label="attention weight")
    fig.suptitle(title, fontsize=8)
    if marked:
        fig.supxlabel(note, fontsize=6.5)
    return fig


def plot_dev_curves(records, tasks, seed):
    """One panel per task, three to a row: its headline metric on the dev set after every epoch, for the probe
    results in `records` (probe records, ``sweeps.ProbeRecord``, with "curve") of one seed. One line per model x
    configuration: the colour says the model, the line style the configuration (baseline, half of the heads or
    another share constant, full PAPA), the same in every panel; one legend below the panels."""
    set_style()
    cols = min(3, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(FULL_WIDTH, 1.9 * rows + 0.5), squeeze=False, layout="constrained")
    shown = [r for r in records if r["task"] in tasks and r["seed"] == seed]
    colours = dict(zip(dict.fromkeys(r["model"] for r in shown), sns.color_palette("colorblind")))
    styles = {"baseline": "-", "part of the heads constant": ":", "full PAPA": "--"}

    def configuration(r):
        k = r["replaced_heads"]
        return "baseline" if k == 0 else "full PAPA" if k == r["total_heads"] else "part of the heads constant"

    for ax, task in zip(axes.flat, tasks):
        metric = get_task(task).metric  # named: metrics read back from JSON come key-sorted
        for r in shown:
            if r["task"] == task:
                ax.plot([c["epoch"] for c in r["curve"]], [c[metric] for c in r["curve"]], marker=".", ms=3, lw=1,
                        color=colours[r["model"]], ls=styles[configuration(r)])
        ax.set_title(task, fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.set_ylabel(metric.replace("_", " "), fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, lw=2) for c in colours.values()]
    handles += [plt.Line2D([], [], color="0.3", ls=style, lw=1) for style in styles.values()]
    fig.legend(handles, list(colours) + list(styles), loc="outside lower center", ncol=3, fontsize=6.5,
               frameon=False)
    fig.suptitle(f"Dev metric after each epoch of the probe (seed {seed})", fontsize=8)
    return fig


def plot_performance_vs_dynamic_heads(summary, references=None):
    """One panel per task: headline metric (mean over seeds, band = min..max) against the share of the model's
    heads that stay input-dependent (so that models of every size share the axis), one line per model. Rightmost point: no head replaced (the probing baseline).
    With `references` (Table 1: model, task, trivial, attention_free), each model's trivial predictor (dotted)
    and attention-free probe (dashed) as horizontal lines in its colour."""
    set_style()
    tasks = list(dict.fromkeys(summary["task"]))
    cols = min(3, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(FULL_WIDTH, 1.9 * rows + 0.4), squeeze=False)
    palette = dict(zip(dict.fromkeys(summary["model"]), sns.color_palette("colorblind")))
    skipped = []
    for ax, task in zip(axes.flat, tasks):
        part = summary[summary.task == task]
        shares = []
        for model, line in part.groupby("model", sort=False):
            line = line.sort_values("dynamic_heads")
            shares += list(_share(line))
            ax.plot(_share(line), line["mean"], marker="o", ms=3, label=model, color=palette[model])
            ax.fill_between(_share(line), line["min"], line["max"], alpha=0.2, color=palette[model])
            if references is not None:
                ref = references[(references.model == model) & (references.task == task)]
                for column, style in (("trivial", ":"), ("attention_free", "--")):
                    if len(ref) and ref[column].notna().all():
                        ax.axhline(ref[column].iloc[0], color=palette[model], ls=style, lw=0.8)
        skipped += _share_axis(ax, shares)
        ax.set_title(task, fontsize=8)
        ax.set_ylabel(f"{part.metric.iloc[0].replace('_', ' ')} (higher is better)", fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if references is not None:
        handles += [plt.Line2D([], [], color="0.4", ls=":", lw=0.8), plt.Line2D([], [], color="0.4", ls="--", lw=0.8)]
        labels += ["trivial predictor", "attention-free probe"]
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), fontsize=7, frameon=False)
    fig.supxlabel("share of heads input-dependent (0 = all heads constant; 1 = the probing baseline)"
                  + _unlabelled(skipped), fontsize=7)  # one label for every panel: side by side they would collide
    fig.tight_layout(rect=(0, 0, 1, 0.93 if len(labels) <= 5 else 0.89))
    return fig


def plot_relative_drop_vs_baseline(table, claims):
    """Claim 3 as its test reads it: relative drop of full PAPA against the probing baseline, one line per task
    across its models (the within-task comparison the model-level test makes), with the least-squares fit pooled
    over every cell as a faint secondary mark (it mixes metrics and dev sets). The title carries the verdict and
    the test's estimate (``verdicts.check_claims``: `strength_model_level`, `pooled_strength_correlation`). Where the
    table holds the references, each point gets them as ticks on a thin vertical line: the relative drop PAPA would
    show if it fell to the attention-free probe (short tick) and to the trivial predictor (long tick)."""
    import numpy as np

    set_style()
    fig, ax = plt.subplots(figsize=(FULL_WIDTH, 3.6))
    for r in table.itertuples():
        levels = [100 * (r.baseline - getattr(r, c)) / r.baseline for c in ("attention_free", "trivial")
                  if hasattr(r, c) and not np.isnan(getattr(r, c))]
        if levels and r.baseline > 0:
            ax.plot([r.baseline] * 2, [min(0, *levels), max(0, *levels)], color="0.85", lw=0.6, zorder=0)
            for level, width in zip(levels, (3, 6)) if len(levels) == 2 else ():
                ax.plot([r.baseline], [level], marker="_", ms=width, color="0.6", zorder=0)
    test, pooled = claims["strength_model_level"], claims["pooled_strength_correlation"]
    if len(table) > 1:
        slope, intercept = np.polyfit(table["baseline"], 100 * table["relative_drop"], 1)
        xs = np.linspace(table["baseline"].min(), table["baseline"].max(), 50)
        p = pooled["pearson"]["value"]
        ax.plot(xs, slope * xs + intercept, color="0.7", lw=0.8, ls=":", zorder=1,
                label=f"pooled fit over all cells (Pearson {p:+.2f}; mixes metrics)")
    markers = dict(zip(dict.fromkeys(table.model), "osD^vP*X"))
    for i, (task, part) in enumerate(table.sort_values("baseline").groupby("task", sort=True)):
        spearman = test["tasks"].get(task, {}).get("spearman")
        label = f"{task}" + (f" (Spearman {spearman:+.2f})" if spearman is not None else " (one model)")
        ax.plot(part["baseline"], 100 * part["relative_drop"], color=f"C{i}", lw=1.2, label=label)
        for r in part.itertuples():  # each model's point in its own marker
            ax.plot([r.baseline], [100 * r.relative_drop], color=f"C{i}", marker=markers[r.model], ms=4, lw=0)
    for model, marker in markers.items():  # the markers' key, as empty lines
        ax.plot([], [], color="0.3", marker=marker, lw=0, ms=4, label=model)
    verdict = test.get("verdict", {}).get("verdict", "undecided")
    estimate = ("no task with two models" if test["mean_spearman"] is None else
                f"mean within-task Spearman {test['mean_spearman']:+.2f}, model-level p = {test['p_greater']:.2f}")
    ax.set_title(f"Claim 3, better models lose more: {verdict}\n({estimate})", fontsize=8)
    ax.set_xlabel("probing baseline (task metric, points)", fontsize=8)
    ax.set_ylabel("relative drop with all heads\nconstant (%, higher = worse)", fontsize=8)
    ax.tick_params(labelsize=7)
    if {"trivial", "attention_free"} <= set(table.columns) and table["trivial"].notna().any():
        ax.text(0.01, 0.99, "grey ticks: drop if PAPA fell to the attention-free\nprobe (short) / trivial predictor (long)",
                transform=ax.transAxes, fontsize=6, va="top", color="0.35")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.legend(fontsize=6.5, bbox_to_anchor=(1.02, 1), loc="upper left", frameon=False,
              title="one line per task, across its models", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_learning_curves(summary):
    """Top row, one panel per task: baseline, PAPA, attention-free probe and trivial predictor against the
    number of training examples (log scale). Bottom row: the paper's relative drop and the share of the learned
    signal lost against the same axis."""
    set_style()
    tasks = list(dict.fromkeys(summary["task"]))
    fig, axes = plt.subplots(2, len(tasks), figsize=(FULL_WIDTH, 3.8), squeeze=False)
    styles = {"baseline": dict(marker="o", color="C0"), "PAPA": dict(marker="s", color="C3"),
              "attention_free": dict(ls="--", color="0.4"), "trivial": dict(ls=":", color="0.4")}
    for col, task in enumerate(tasks):
        part = summary[summary.task == task].sort_values("train_examples")
        top, bottom = axes[0, col], axes[1, col]
        for name, style in styles.items():
            top.plot(part.train_examples, part[name], ms=3, lw=1, label=name.replace("_", "-"), **style)
        top.set_title(task, fontsize=8)
        top.set_ylabel(f"{part.metric.iloc[0].replace('_', ' ')} (higher is better)", fontsize=6)
        bottom.plot(part.train_examples, 100 * part.relative_drop, marker="o", ms=3, lw=1, label="relative drop")
        bottom.plot(part.train_examples, 100 * part.learned_lost, marker="^", ms=3, lw=1,
                    label="share of learned signal lost")
        bottom.axhline(0, color="0.6", lw=0.6)
        bottom.set_ylabel("% (higher = PAPA loses more)", fontsize=6)
        bottom.set_xlabel("training examples", fontsize=7)
        for ax in (top, bottom):  # a tick at each training size, written out; no minor tick labels
            from matplotlib.ticker import FixedLocator, NullLocator

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(list(part.train_examples)))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([f"{n:,}" for n in part.train_examples], fontsize=6)
    for row in range(2):
        handles, labels = axes[row, 0].get_legend_handles_labels()
        axes[row, -1].legend(handles, labels, fontsize=MIN_FONT_PT, frameon=False, loc="best")
    fig.suptitle(f"{summary.model.iloc[0]}: how the verdicts move with the probe's training data", fontsize=8)
    fig.tight_layout()
    return fig


def _share(line):
    """The share of a model's heads that stay input-dependent at each point of its sweep (its baseline, every head
    input-dependent, is the largest count): models of different sizes on one axis."""
    return line.dynamic_heads / line.dynamic_heads.max()


def _share_axis(ax, shares) -> list[str]:
    """A linear x axis from 0 to 1 with a tick at each share plotted, written as a fraction (0, 1/16, 1/2, 1). Where
    two labels would not fit side by side at the axis's width, the ends and 1/2 keep theirs and the others go
    unlabelled: returns those, for the axis label to name."""
    from fractions import Fraction

    from matplotlib.ticker import FixedLocator, NullLocator

    ticks = sorted({round(float(x), 4) for x in shares})
    labels = {t: str(Fraction(t).limit_denominator(64)) for t in ticks}
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(-0.03, 1.03)
    width = 0.85 * ax.get_position().width * ax.figure.get_figwidth() * 72 / 1.06  # points per unit share (margin)
    half = lambda t: 0.6 * MIN_FONT_PT * len(labels[t]) / 2 + 1.5  # noqa: E731  half a label's width, points
    kept = []
    for t in sorted(ticks, key=lambda t: (t not in (0.0, 0.5, 1.0), t)):  # the ends and 1/2 first
        if all(abs(t - k) * width >= half(t) + half(k) for k in kept):
            kept.append(t)
    ax.set_xticklabels([labels[t] if t in kept else "" for t in ticks], fontsize=MIN_FONT_PT)
    return [labels[t] for t in ticks if t not in kept]


def _unlabelled(skipped) -> str:
    """What an axis label adds for the ticks ``_share_axis`` left without a label."""
    return f" (ticks without a label: {', '.join(dict.fromkeys(skipped))})" if skipped else ""


RANKING_STYLES = {"gates": ("k", "-"), "input_dependence": ("C0", "-"), "variance": ("C2", "--"),
                  "random": ("0.55", ":")}


def plot_ranking_comparison(points):
    """One panel per model x task: headline metric against the share of input-dependent heads, one line per
    ranking family (``statistics.ranking_points``: mean; band = min..max over seeds, or over orders for random).
    The ends are shared: full PAPA (x = 0) and the baseline (all heads input-dependent)."""
    set_style()
    models, tasks = list(dict.fromkeys(points["model"])), list(dict.fromkeys(points["task"]))
    fig, axes = plt.subplots(len(models), len(tasks), figsize=(FULL_WIDTH, 1.35 * len(models) + 0.9),
                             squeeze=False)
    skipped = []
    for r, model in enumerate(models):
        for c, task in enumerate(tasks):
            ax = axes[r, c]
            part = points[(points.model == model) & (points.task == task)]
            shares = []
            for family, line in part.groupby("family", sort=False):
                line = line.sort_values("dynamic_heads")
                line = line.assign(share=line.dynamic_heads / part.dynamic_heads.max())
                shares += list(line.share)
                color, style = RANKING_STYLES.get(family, ("C3", "-"))
                ax.plot(line.share, line["mean"], marker="o", ms=2, lw=1, color=color, ls=style,
                        label=family.replace("_", " "))
                ax.fill_between(line.share, line["min"], line["max"], alpha=0.15, color=color)
            skipped += _share_axis(ax, shares)
            ax.tick_params(labelsize=MIN_FONT_PT)
            metric = part.metric.iloc[0].replace("_", " ") if len(part) else ""
            ax.set_title(f"{model} {task}\n({metric})" if len(models) > 1 else f"{task} ({metric})", fontsize=6)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=7, frameon=False)
    fig.supxlabel("share of heads input-dependent (0 = all heads constant; 1 = the probing baseline)"
                  + _unlabelled(skipped), fontsize=7)
    fig.supylabel("metric (in each title; higher is better)", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def plot_claims_1_and_2(claims):
    """Claims 1 and 2 as their rules read them (``verdicts.check_claims``). Left, claim 1: each model's average
    relative drop with every head constant and the pooled one, with their 95% intervals, beside the paper's 8% and
    the 12% the whole interval must stay under. Right, claim 2: each model's share of its full-PAPA loss already
    lost at each partial point of the sweep, with its interval, on the cells where full PAPA loses measurably.
    Each panel's title carries the pooled estimate and the verdict."""
    import numpy as np
    from fractions import Fraction

    set_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(FULL_WIDTH, 3.0))
    a, h = claims["all_heads"], claims["half_heads"]
    rows = [(m, v["relative_drop"]) for m, v in a["per_model"].items() if v["relative_drop"]["points"]]
    rows += [("all models", a["relative_drop"])] if a["relative_drop"]["points"] else []
    if not rows:
        left.text(0.5, 0.5, "no cell carries signal", ha="center", va="center", transform=left.transAxes, fontsize=8)
    for y, (name, avg) in enumerate(rows):
        low, high = avg.get("ci_low"), avg.get("ci_high")
        err = None if low is None or np.isnan(low) else [[max(0, 100 * (avg["value"] - low))],
                                                         [max(0, 100 * (high - avg["value"]))]]
        left.errorbar([100 * avg["value"]], [y], xerr=err, fmt="o" if name != "all models" else "D", ms=4,
                      color="0.2" if name == "all models" else f"C{y}", capsize=2, lw=1)
    left.set_yticks(range(len(rows)), [f"{n} ({r['points']} cells)" for n, r in rows], fontsize=7)
    left.invert_yaxis()
    paper, upper = 100 * claims["paper_all_heads_average_relative_drop"], 100 * claims["thresholds"]["about_paper_upper"]
    left.axvline(paper, color="C3", lw=0.8, ls="--", label=f"the paper's {paper:.0f}%")
    left.axvline(upper, color="C3", lw=0.8, ls=":", label=f"{upper:.0f}%: the interval's limit to hold")
    left.axvline(0, color="0.6", lw=0.6)
    left.set_xlabel("average relative drop, all heads constant (%, 95% CI)", fontsize=7)
    left.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    verdict = a.get("verdict", {}).get("verdict", "undecided")
    left.set_title(f"Claim 1, all heads constant: {verdict}\npooled {_percent(a['relative_drop'])}", fontsize=8)
    sweep = h.get("sweep", {})
    labels = sorted(sweep, key=Fraction)
    models = list(dict.fromkeys(m for label in labels for m in sweep[label]["per_model"]))
    for i, model in enumerate(models):
        xs, ys, errs = [], [], [[], []]
        for label in labels:
            share = sweep[label]["per_model"].get(model, {}).get("share_of_full_loss", {})
            if share.get("value") is None or np.isnan(share["value"]):
                continue
            xs.append(float(Fraction(label)) + 0.012 * (i - (len(models) - 1) / 2))  # side by side
            ys.append(share["value"])
            low, high = share.get("ci_low"), share.get("ci_high")
            errs[0].append(0 if low is None or np.isnan(low) else max(0, share["value"] - low))
            errs[1].append(0 if high is None or np.isnan(high) else max(0, high - share["value"]))
        if xs:
            colour = [n for n, _ in rows].index(model) if model in [n for n, _ in rows] else i
            right.errorbar(xs, ys, yerr=errs, fmt="o-", ms=4, capsize=2, lw=1, color=f"C{colour}", label=model)
    right.axhline(0, color="0.6", lw=0.6)
    right.axhline(1, color="0.6", lw=0.6, ls="--")
    right.set_xlim(0.4, 1.02)
    right.set_xticks([float(Fraction(label)) for label in labels] or [0.5], labels or ["1/2"], fontsize=7)
    right.set_xlabel("share of the heads constant", fontsize=7)
    right.set_ylabel("share of the full-PAPA loss\nalready lost (95% CI)", fontsize=7)
    if models:
        right.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
    verdict = h.get("verdict", {}).get("verdict", "undecided")
    right.set_title(f"Claim 2, half of the heads constant: {verdict}\npooled drop {_percent(h['relative_drop'])}\n"
                    f"where full PAPA loses measurably", fontsize=8)
    fig.tight_layout()
    return fig


def _percent(average: dict) -> str:
    """'6.7% [1.9, 13.6] over 14 cells' from a claims.json average."""
    import numpy as np

    value, low, high = average.get("value"), average.get("ci_low"), average.get("ci_high")
    if value is None or np.isnan(value):
        return "undefined"
    ci = "" if low is None or np.isnan(low) else f" [{100 * low:.1f}, {100 * high:.1f}]"
    return f"{100 * value:.1f}%{ci} over {average['points']} cells"
