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
# # 2. Probing baseline and full PAPA
#
# Rebuilds the baseline / PAPA columns of `results/<profile>/probe_results.csv`.
#
# A probe is trained on top of the frozen encoder (method doc): for sentence tasks a pooler with one
# weight per hidden-state level and slot, then Linear, tanh, dropout, Linear; for token tasks a per-token
# Linear over all hidden-state levels. AdamW, batch 16; the profile sets the epochs, the learning rate and its
# schedule (printed below; the paper's are 15 epochs at a constant 2e-5), and the final epoch is reported. Every
# model of a profile gets the same training and dev examples, L and schedule. The backbone runs once per
# configuration in eval mode; its hidden states are cached and reused by every epoch and seed.
#
# * **probing baseline**: no head replaced;
# * **full PAPA**: every head of every layer attends with its constant (average) matrix.
#
# With the baseline come its two references, on the same dev data and metric: the **trivial predictor**
# (majority class of the training subset; all `O` for NER; each word's most frequent tag for POS) and the
# **attention-free probe** (the same probe, same seeds, on hidden-state level 0 only: the embeddings, before any
# attention; it reuses the baseline's features, no extra backbone pass).

# %% tags=["parameters"]
profile = "smoke"
models = ""
tasks = ""
ranking = ""  # how the partial sweep orders the heads (empty: the profile's)
passes = ""  # backbone passes: packed (real tokens only) or padded (the whole layout); empty: the profile's
run_dir = ""  # empty: runs/<run name> ($PAPA_RUNS_DIR instead of runs/ when set)

# %%
import pandas as pd

from papa_utils import describe
from papa_utils.reports.statistics import read_statistics, table1
from papa_utils.reports.figures import plot_dev_curves, save_figure
from papa_utils.core.backbones import cached_model
from papa_utils.records.runs import figures_dir, notebook_run, results_dir
from papa_utils.runner.sweeps import probe_sweep
from papa_utils.reports.tables import save_table, write_results
from papa_utils.runner.steps import truncation_table
from papa_utils.reports.pages import convergence_line

profile, run_dir = notebook_run(profile, models, tasks, ranking, passes, run_dir)
print("examples per task, the same for every model (None: the whole split):")
for task in profile.tasks:
    print(f"  {task}: {profile.sizes(profile.models[0], task)}, L {profile.length(task)}")
print(f"probe: {profile.epochs} epochs at lr {profile.probe_lr:g} ({profile.lr_schedule} schedule); seeds "
      f"{', '.join(map(str, profile.seeds))}")

# %%
records = []
for model_name in profile.models:
    info = describe(cached_model(model_name)[0])
    for task in profile.tasks:
        records += probe_sweep(run_dir, profile, model_name, task, [0, info["layers"] * info["heads"]])
results = write_results(run_dir, profile)
notes = {r["data_note"] for r in records if r["data_note"]}
for note in notes:
    print("NOTE:", note)

# %% [markdown]
# ## How much of each input does the layout keep?
# The PAPA layout gives a single sentence L/2 − 1 slots and each segment of a pair about L/2: the share of the
# probe's training and dev examples it cuts, at this profile's L and at 64 and 128 (`results/truncation.csv`).

# %%
truncation = truncation_table(profile)
save_table(truncation, results_dir(run_dir) / "truncation.csv")
truncation.pivot_table(index=["task", "L"], columns="model", values="dev_truncated").round(3)

# %% [markdown]
# ## Baseline vs. all heads constant (mean ± std over seeds, task metric in points), with the references

# %%
statistics = read_statistics(results_dir(run_dir))  # the same per-example statistics notebook 4 reads
t1 = table1(results, statistics)
t1[["model", "task", "metric", "trivial", "attention_free", "baseline", "baseline_std", "papa", "papa_std",
    "relative_drop", "learned_lost", "contextual_lost", "contextual_note", "in_claims"]].round(3)

# %% [markdown]
# A cell whose baseline does not clear both references by more than its own noise (seeds and dev examples,
# bootstrapped) has nothing PAPA could be seen to lose: it stays in the table and is left out of the claims.

# %%
for r in t1[t1.headline & ~t1.in_claims].itertuples():
    print(f"left out of the claims: {r.model} {r.task}: {r.signal_note}")

# %% [markdown]
# ## Did the probes converge?
# The final epoch is reported, so each dev curve should end flat: per cell, the mean over seeds of the last
# epochs, the last epoch's gain and the tail's slope (`results/convergence.csv`). Under a learning rate that
# decays to 0 the last epoch's gain is small by construction, so the check fits the slope of the last epochs
# against the training done, counted in epochs at the peak rate: what one more epoch at that rate would still move.
# A curve ended flat when that slope is under 0.5 points per epoch, or within twice its standard error over the
# seeds (a trend the seeds' noise can make); a curve still rising or falling beyond both fails, and a curve that
# swings fails as far as the swing tilts the fitted line. These are this notebook's probes (no
# head, every head constant, attention-free); notebook 3 adds the partial points to the same table, and the
# README counts them all.

# %%
convergence = pd.read_csv(results_dir(run_dir) / "convergence.csv")
print(convergence_line(convergence))
convergence.round(2)

# %% [markdown]
# ## Dev curves: each task's headline metric after every epoch (first seed)

# %%
fig = plot_dev_curves(records, profile.tasks, profile.seeds[0])
save_figure(fig, figures_dir(run_dir) / "dev_curves")
