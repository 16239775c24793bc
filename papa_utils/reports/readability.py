"""Whether a figure reads at the size it is shown: text size, titles, axis and colour-bar labels, overlapping tick
labels (``readability_problems``), and what a saved PNG recorded of that (``saved_problems``).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt


MIN_FONT_PT = 6.0  # the smallest text a figure may carry: readable at the size a page or notebook shows it


READABILITY_KEY = "papa:readability"  # the PNG text chunk that records ``readability_problems`` of a saved figure


def saved_problems(png: str | Path) -> list[str] | None:
    """What ``readability_problems`` found in a figure saved by ``save_figure`` (None: not recorded)."""
    import json

    from PIL import Image

    with Image.open(png) as image:
        found = image.text.get(READABILITY_KEY)
    return None if found is None else json.loads(found)


def readability_problems(fig) -> list[str]:
    """Why `fig` would not read at the size it is shown, as sentences (none when it reads): text below
    ``MIN_FONT_PT``; a panel without a title (when the figure has no overall title either); an x or y axis that
    shows ticks or an image without a label (its own, or the figure's shared one); a colour bar without a label
    (its unit); two tick labels of one axis that overlap, or two titles or axis labels (their extents as drawn). A
    label on one panel of a row (y) or column (x) serves the whole row or column."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    colorbars = {ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None or ax.get_label() == "<colorbar>"}
    shared = {"x": fig._supxlabel is not None and fig._supxlabel.get_text(),
              "y": fig._supylabel is not None and fig._supylabel.get_text()}
    overall = fig._suptitle is not None and fig._suptitle.get_text()
    small = sorted({f"{t.get_fontsize():g} pt" for t in fig.findobj(plt.Text)
                    if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT_PT})
    if small:
        problems.append(f"text below {MIN_FONT_PT:g} pt ({', '.join(small)})")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax not in colorbars]
    # an axis label serves every panel of its row (y) or column (x): a grid labels its outer panels
    rows_labelled = {round(ax.get_position().y0, 3) for ax in panels if ax.get_ylabel()}
    columns_labelled = {round(ax.get_position().x0, 3) for ax in panels if ax.get_xlabel()}
    for n, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        name = f"panel {n + 1}" + (f" ({ax.get_title()})" if ax.get_title() else "")
        if ax in colorbars:
            label = ax.get_ylabel() or ax.get_xlabel()
            if not label:
                problems.append(f"a colour bar without a label (its unit)")
            continue
        if not ax.get_title() and not overall:
            problems.append(f"{name} has no title")
        drawn = bool(ax.images or ax.collections or ax.lines or ax.patches)
        for axis, label in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())):
            ticks = [t for t in getattr(ax, f"get_{axis}ticklabels")() if t.get_visible() and t.get_text().strip()]
            line = round(getattr(ax.get_position(), "x0" if axis == "x" else "y0"), 3)
            labelled = line in (columns_labelled if axis == "x" else rows_labelled)
            if (ticks or drawn) and not label and not shared[axis] and not labelled:
                problems.append(f"{name}: its {axis} axis has no label")
            boxes = sorted((t.get_window_extent(renderer) for t in ticks),
                           key=lambda b: b.x0 if axis == "x" else b.y0)
            if any(a.overlaps(b) for a, b in zip(boxes, boxes[1:])):
                problems.append(f"{name}: its {axis} tick labels overlap")
    problems += _overlapping_labels(fig, renderer)
    return problems


def _overlapping_labels(fig, renderer) -> list[str]:
    """Titles and axis labels (colour bars' included, and the figure's own) that overlap one another as drawn."""
    texts = [t for ax in fig.axes if ax.get_visible()  # a switched-off panel draws its titles, not its labels
             for t in (ax.title, ax._left_title, ax._right_title) + ((ax.xaxis.label, ax.yaxis.label) if ax.axison else ())]
    texts += [t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t is not None]
    drawn = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text().strip()]
    pairs = sorted({f"'{a}' and '{b}'" for i, (a, box) in enumerate(drawn) for b, other in drawn[i + 1:]
                    if box.overlaps(other)})
    return [f"labels or titles overlap: {'; '.join(pairs)}"] if pairs else []
