"""The lesson's figures: head statistics as maps and clusters, one input's attention, and a head's average beside
one input's pattern. They share the run figures' style and readability checks (``figures``).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

from ..reports.figures import COLUMN_WIDTH, FULL_WIDTH, fixed_slots, set_style
from ..reports.readability import MIN_FONT_PT


# the head statistics (``head_stats.head_statistics``) in words, for titles, and the unit of each, for colour bars
STATISTICS_IN_WORDS = {
    "entropy": ("entropy of a row", "entropy (nats)"),
    "mass_cls": ("attention on [CLS]", "share of a row"),
    "mass_sep": ("attention on separators", "share of a row"),
    "mass_punctuation": ("attention on punctuation", "share of a row"),
    "offset_-1": ("attention to the previous token", "share of a row"),
    "offset_+0": ("attention to the token itself", "share of a row"),
    "offset_+1": ("attention to the next token", "share of a row"),
}


def in_words(text: str) -> str:
    """`text` with the head statistics' code names (``STATISTICS_IN_WORDS``) written in words."""
    import re

    names = sorted(STATISTICS_IN_WORDS, key=len, reverse=True)
    return re.sub("|".join(re.escape(n) for n in names), lambda m: STATISTICS_IN_WORDS[m.group(0)][0], text)


def plot_head_map(values, title: str = "", cmap: str = "viridis", center=None, fmt: str = ".2f", ax=None, vmin=None,
                  unit: str = ""):
    """A [layers, heads] statistic as a layer x head heat map (numbers written in the cells when they fit), titled
    in words (``in_words``), its colour bar labelled with `unit` (default: the statistic's unit when the title names
    one of ``STATISTICS_IN_WORDS``, else the title)."""
    set_style()
    named = next((n for n in sorted(STATISTICS_IN_WORDS, key=len, reverse=True) if title.startswith(n)), None)
    unit = unit or (STATISTICS_IN_WORDS[named][1] if named else in_words(title))
    title = in_words(title)
    values = values.numpy() if hasattr(values, "numpy") else values
    if ax is None:
        _, ax = plt.subplots(figsize=(min(FULL_WIDTH, 0.45 * values.shape[1] + 1), 0.3 * values.shape[0] + 0.8))
    sns.heatmap(values, ax=ax, cmap=cmap, center=center, vmin=vmin, annot=values.size <= 150, fmt=fmt,
                annot_kws={"fontsize": MIN_FONT_PT}, cbar=True, cbar_kws={"label": unit or title})
    ax.set(xlabel="head", ylabel="layer", title=title)
    return ax.figure


def plot_head_clusters(points, layers: int, heads: int, title: str = ""):
    """Heads as points in the plane (``head_stats.map_2d`` of their attention distances), coloured by layer, each
    labelled "layer.head": heads close together attend alike."""
    set_style()
    points = points.numpy() if hasattr(points, "numpy") else points
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH + 0.8, COLUMN_WIDTH + 0.2))
    for layer in range(layers):
        part = points[layer * heads:(layer + 1) * heads]
        ax.scatter(part[:, 0], part[:, 1], s=14, color=f"C{layer}", label=f"layer {layer}")
        for h, (x, y) in enumerate(part):
            ax.annotate(f"{layer}.{h}", (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points", color="0.3")
    ax.set_xlabel("first axis of the map (JS distance)", fontsize=7)
    ax.set_ylabel("second axis of the map (JS distance)", fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, frameon=False, loc="best")
    fig.tight_layout()
    return fig


def plot_one_input(attention, tokens, heads, title: str = "", titles=None):
    """A few heads' attention on one input, with its tokens on the axes (padding slots dropped), on one colour scale
    (attention weight) shared by the panels. Every token is labelled while the labels fit at ``MIN_FONT_PT``;
    beyond that, every other one, and the axis labels say so.
    attention: [layers, heads, L, L] of one example; tokens: L strings ("" for padding); `titles`: one per panel
    (default "layer l, head h")."""
    set_style()
    keep = [i for i, t in enumerate(tokens) if t]
    cols = 1 if len(keep) > 24 else min(2, len(heads))  # long inputs: one panel to a row, the page's width
    size = FULL_WIDTH / cols - 0.6
    step = 1 if len(keep) * MIN_FONT_PT * 1.35 / 72 <= size else 2  # a label's height: 1.35 times its size
    labels = [tokens[i] if n % step == 0 else "" for n, i in enumerate(keep)]
    skipped = "" if step == 1 else " (every other token labelled)"
    rows = -(-len(heads) // cols)
    top = max(float(attention[layer, head][keep][:, keep].max()) for layer, head in heads) or 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(FULL_WIDTH, (size + 0.6) * rows + 0.5), squeeze=False,
                             layout="constrained")
    for n, (ax, (layer, head)) in enumerate(zip(axes.flat, heads)):
        matrix = attention[layer, head][keep][:, keep].numpy()
        sns.heatmap(matrix, ax=ax, cmap="viridis", vmin=0, vmax=top, cbar=False, square=True, xticklabels=labels,
                    yticklabels=labels)
        ax.tick_params(labelsize=MIN_FONT_PT, length=0)
        ax.set_title(titles[n] if titles else f"layer {layer}, head {head}", fontsize=8)
        ax.set_xlabel(f"key{skipped}", fontsize=7)
        ax.set_ylabel(f"query{skipped}", fontsize=7)
    for ax in list(axes.flat)[len(heads):]:
        ax.axis("off")
    fig.colorbar(axes.flat[0].collections[0], ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle(in_words(title), fontsize=9)
    return fig


def plot_average_vs_input(substitute, attention, layer: int, head: int, title: str = "", token_mask=None,
                          pair: bool = True):
    """One head in the PAPA layout: its substitute renorm(C * m m^T) on one input, its real attention on that
    input (both on one colour scale, attention weight), and their signed difference (real - substitute, on a scale
    of its own). Inputs [layers, heads, L, L] of one example; with `token_mask` [L], only the slots of the input's
    real tokens are drawn (in slot order), not its padding. The layout's fixed slots are marked with dashed lines
    (``figures.fixed_slots``: L/2, where a pair's second segment starts, for a `pair` task, and L-1)."""
    set_style()
    fig, axes = plt.subplots(1, 3, figsize=(FULL_WIDTH, 2.7), layout="constrained")
    sub, real = substitute[layer, head].numpy(), attention[layer, head].numpy()
    length = sub.shape[-1]
    keep = list(range(length)) if token_mask is None else [i for i, m in enumerate(token_mask.tolist()) if m]
    sub, real = sub[keep][:, keep], real[keep][:, keep]
    fixed, note = fixed_slots(length, pair)
    marked = [keep.index(s) for s in fixed if s in keep]
    top = max(sub.max(), real.max())
    for ax, matrix, name in ((axes[0], sub, "constant (average) on\nthis input's tokens"),
                             (axes[1], real, "its attention on\nthis input")):
        sns.heatmap(matrix, ax=ax, cmap="viridis", vmin=0, vmax=top, square=True, xticklabels=False,
                    yticklabels=False, cbar=False)
        ax.set_title(name, fontsize=7)
    fig.colorbar(axes[0].collections[0], ax=axes[:2], shrink=0.8, label="attention weight")
    bound = abs(real - sub).max() or 1.0
    sns.heatmap(real - sub, ax=axes[2], cmap="coolwarm", center=0, vmin=-bound, vmax=bound, square=True,
                xticklabels=False, yticklabels=False, cbar_kws={"label": "difference in weight", "shrink": 0.8})
    axes[2].set_title("attention minus\nconstant", fontsize=7)
    for ax in axes:
        for position in marked:
            ax.axvline(position, color="w" if ax is not axes[2] else "0.3", lw=0.5, ls="--")
            ax.axhline(position, color="w" if ax is not axes[2] else "0.3", lw=0.5, ls="--")
        ax.set_xlabel("key slot" + (" (real tokens)" if token_mask is not None else ""), fontsize=6.5)
        ax.set_ylabel("query slot" + (" (real tokens)" if token_mask is not None else "") if ax is axes[0] else "",
                      fontsize=6.5)
    fig.suptitle(title or f"layer {layer}, head {head}", fontsize=8)
    if marked:
        fig.supxlabel(note, fontsize=6.5)
    return fig
