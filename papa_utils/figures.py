"""One shared figure style; every figure saved as PDF (papers) and PNG (README), atomically."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from .runs import atomic_path  # noqa: E402

COLUMN_WIDTH, FULL_WIDTH = 3.0, 6.3  # ACL single column / full width, inches


def set_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 150, "savefig.bbox": "tight", "pdf.fonttype": 42})


def save_figure(fig, path_without_suffix: str | Path) -> list[Path]:
    """Write `<path>.pdf` and `<path>.png`; returns both paths."""
    base = Path(path_without_suffix)
    paths = []
    for suffix in (".pdf", ".png"):
        target = base.with_suffix(suffix)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=suffix[1:])
        paths.append(target)
    return paths


def plot_attention_heatmaps(averages, example, heads, tokens=None, title=""):
    """Average attention (top row) next to one real example's attention (bottom row) for a few heads.

    averages: [layers, heads, L, L]; example: [layers, heads, L, L] of one input; heads: [(layer, head)];
    tokens: optional list of L token strings (padding shown as blank).
    """
    set_style()
    fig, axes = plt.subplots(2, len(heads), figsize=(FULL_WIDTH, 2.9), squeeze=False)
    for col, (layer, head) in enumerate(heads):
        for row, (matrix, label) in enumerate(((averages, "average"), (example, "one example"))):
            ax = axes[row, col]
            sns.heatmap(matrix[layer, head].numpy(), ax=ax, cmap="viridis", vmin=0, cbar=False, square=True,
                        xticklabels=False, yticklabels=False)
            ax.set_title(f"layer {layer} head {head}" if row == 0 else "", fontsize=7)
            if col == 0:
                ax.set_ylabel(f"{label}\nquery slot", fontsize=7)
            if row == 1:
                ax.set_xlabel("key slot", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig
