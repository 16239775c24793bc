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
# # 5. Would a stronger probe change the verdict? Learning curves
#
# Rebuilds `figures/learning_curves.{pdf,png}` and `results/learning_curves.csv` in the run folder.
#
# Probes trained on a few thousand examples may not have reached what the model's hidden states allow, and a
# verdict read near a probe's floor says little. Here every model the profile names is probed at growing training
# sizes (the same random order, so each subset contains the smaller ones), with everything else as in the main
# run: the same constant matrices, the same dev set, the same probe and schedule. At every size we train the
# baseline probe, the probe with all heads constant (PAPA), and the attention-free probe (hidden-state level 0
# only, before any attention), and score the trivial predictor of that training subset. The `cpu` profile has
# no curves (the `cpu-robustness` profile does); the `smoke` profile runs a small one.
#
# Read the bottom row first: if the share of the learned signal that PAPA loses grows with the training size,
# the small-data numbers of Table 1 understate what constant attention costs this model.

# %% tags=["parameters"]
profile = "smoke"
models = ""
tasks = ""
ranking = ""  # how the partial sweep orders the heads (empty: the profile's)
passes = ""  # backbone passes: packed (real tokens only) or padded (the whole layout); empty: the profile's
run_dir = ""  # empty: runs/<run name> ($PAPA_RUNS_DIR instead of runs/ when set)

# %%
from IPython.display import display

from papa_utils.reports.statistics import curve_seed_drops, curve_summary
from papa_utils.reports.figures import plot_learning_curves, save_figure
from papa_utils.reports.rendering import probe_strength_sentence
from papa_utils.settings.profiles import why_absent
from papa_utils.records.runs import figures_dir, notebook_run, results_dir
from papa_utils.runner.sweeps import learning_curve
from papa_utils.reports.tables import claims_left_out, curve_table, save_table
from papa_utils.reports.verdicts import probe_strength

profile, run_dir = notebook_run(profile, models, tasks, ranking, passes, run_dir)
if why_absent(profile, "learning curve") is None:
    print(f"models {', '.join(profile.curve_models)}; tasks {', '.join(profile.curve_tasks)}; training sizes "
          f"{', '.join(map(str, profile.curve_sizes))}; seeds {', '.join(map(str, profile.curve_seeds))}")

# %%
records = [r for model_name in profile.curve_models for task in profile.curve_tasks
           for r in learning_curve(run_dir, profile, model_name, task)]
if not records:
    print(why_absent(profile, "learning curve"))
curve = curve_table(records)
save_table(curve, results_dir(run_dir) / "learning_curves.csv")
summary = curve_summary(curve) if records else None
summary

# %% [markdown]
# ## The curves

# %%
for model_name in profile.curve_models if summary is not None else ():  # one figure per model
    fig = plot_learning_curves(summary[summary.model == model_name])
    save_figure(fig, figures_dir(run_dir) / f"learning_curves_{model_name}")
    display(fig)

# %% [markdown]
# ## What it says
# Read only on the cells the claims keep (notebook 4's `claims.json`) whose baseline beats both references at every
# size: whether the drop rises with the baseline across sizes (Spearman, descriptive with three sizes) and, with
# several seeds, whether each seed's drop moves from the smallest size to the largest beyond the seeds' noise (a 95%
# interval over the seeds, Student's t).

# %%
if summary is not None:
    strength = probe_strength(summary, claims_left_out(run_dir), curve_seed_drops(curve))
    print(probe_strength_sentence(strength, profile.curve_seeds))
