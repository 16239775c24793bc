# ---
# jupyter:
#   jupytext:
#     formats: ipynb,src//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Average attention: the constant matrices of PAPA
#
# Rebuilds `figures/<profile>/average_attention_<model>_<task>.{pdf,png}`.
#
# PAPA replaces each attention head's input-dependent matrix with a constant one: the head's average
# attention over the task's training inputs, laid out in fixed slots (the *PAPA layout*: `[CLS]` and the
# first segment from slot 0, the second segment from slot L/2, the final separator at slot L-1).
# For every layer, head, query slot *i* and key slot *j*, the average is taken over the examples in which
# both *i* and *j* hold real tokens. This notebook computes those averages for every model x task of the
# profile (cached under the run folder) and shows a few heads next to the attention of one real example.
#
# When the averages are taken over the same examples the probe trains on, the same backbone pass also keeps
# its hidden states: they are the probing baseline's training features (notebook 2), saved memory-mapped
# under `<run folder>/features/` and deleted once the baseline probes have used them.
#
# Defaults are the quick `smoke` configuration; `make figures PROFILE=cpu` runs the full grid.

# %% tags=["parameters"]
# models, tasks: comma-separated subsets of the profile (empty: all of them)
profile = "smoke"
models = ""
tasks = ""
ranking = ""  # how the partial sweep orders the heads (empty: the profile's)
passes = ""  # backbone passes: packed (real tokens only) or padded (the whole layout); empty: the profile's
run_dir = ""  # empty: runs/<run name> ($PAPA_RUNS_DIR instead of runs/ when set)

# %%
import pandas as pd

from papa_utils import describe
from papa_utils.reports.figures import plot_attention_heatmaps, save_figure, used_slots
from papa_utils.core.backbones import cached_model, example_attention
from papa_utils.records.runs import figures_dir, notebook_run
from papa_utils.runner.steps import average_attention
from papa_utils.settings.tasks import get_task

profile, run_dir = notebook_run(profile, models, tasks, ranking, passes, run_dir)
profile

# %% [markdown]
# ## Compute (or reuse) the averages for every model x task

# %%
rows, averages = [], {}
for model_name in profile.models:
    for task in profile.tasks:
        avg = averages[model_name, task] = average_attention(run_dir, profile, model_name, task)
        rows.append({"model": model_name, "task": task, "L": avg.length, "examples": avg.meta["examples"],
                     "seconds": avg.meta.get("seconds"), "note": avg.meta.get("data_note", "")})
pd.DataFrame(rows)

# %% [markdown]
# Averages are not row-normalised: each cell (i, j) is averaged over its own set of examples (those where
# both slots are real tokens), so a row can sum to more or less than one. When the matrix replaces a head,
# each example masks it to its own real tokens and renormalises every row. Every entry is a probability:

# %%
for (model_name, task), avg in averages.items():
    assert 0 <= avg.averages.min() and avg.averages.max() <= 1 + 1e-6, (model_name, task)
    row_mass = avg.averages.sum(-1)[..., avg.counts.diagonal() > 0]
    print(f"{model_name:12s} {task:5s} entries in [0, 1]; row sums over real rows in "
          f"[{row_mass.min():.3f}, {row_mass.max():.3f}]")

# %% [markdown]
# ## A few heads: average pattern vs one real example
#
# Top row: average attention; bottom row: the first validation example. Heads from the first and the last
# layer. Only the slots that hold a real token in at least 5% of the averaged inputs are drawn
# (`papa_utils.reports.figures.used_slots`): in the PAPA layout most of the others are the padding between the segments.

# %%
for model_name in profile.models:
    info = describe(cached_model(model_name)[0])
    heads = [(0, 0), (0, info["heads"] // 2), (info["layers"] - 1, 0), (info["layers"] - 1, info["heads"] // 2)]
    for task in profile.tasks:
        avg = averages[model_name, task]
        example, tokens = example_attention(model_name, task, avg.length)
        slots = used_slots(avg.counts)  # the slots that hold a real token in at least 5% of the inputs
        fig = plot_attention_heatmaps(avg.averages, example, heads, slots=slots, pair=get_task(task).is_pair,
                                      title=f"{model_name}, {task} (L={avg.length}, {avg.meta['examples']} examples; "
                                            f"{len(slots)} of {avg.length} slots in use)")
        save_figure(fig, figures_dir(run_dir) / f"average_attention_{model_name.replace('/', '--')}_{task}")
