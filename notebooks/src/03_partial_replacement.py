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
# # 3. Partial replacement: which heads can go?
#
# Rebuilds `figures/<profile>/performance_vs_dynamic_heads.{pdf,png}`.
#
# The heads are ranked, and replacing the first k of the ranking gives the paper's sweep over k = 0, 1/2, 7/8,
# 15/16 and all of the heads (BERT-base: 0, 72, 126, 135, 144); a profile may run fewer shares, the same for every
# model (the `cpu` profile: 0, 1/2, all; the figure below shows the run's). The ranking is the profile's
# (`ranking`):
# - **gates** (the paper's): every head gets a gate g (initialised to 0, so sigmoid(g) = 0.5) and attends with
#   sigmoid(g) * its own attention + (1 - sigmoid(g)) * its constant matrix; the gates train jointly with a
#   probe while the backbone stays frozen. Heads sorted by final gate, ascending, lean most on their constant
#   matrix.
# - **input dependence** (the `cpu` profile's): the mean Jensen–Shannon divergence between a head's attention
#   rows and their constant substitutes (notebook 0), ascending: the heads whose attention depends least on the
#   input go first. One forward pass, no training, no seed.

# %% tags=["parameters"]
profile = "smoke"
models = ""
tasks = ""
ranking = ""  # how the partial sweep orders the heads (empty: the profile's)
passes = ""  # backbone passes: packed (real tokens only) or padded (the whole layout); empty: the profile's
run_dir = ""  # empty: runs/<run name> ($PAPA_RUNS_DIR instead of runs/ when set)

# %%
from papa_utils import describe
from papa_utils.reports.statistics import half_heads_change, read_statistics, seed_summary, table1
from papa_utils.reports.figures import plot_head_ranking, plot_performance_vs_dynamic_heads, save_figure
from papa_utils.core.backbones import cached_model
from papa_utils.records.runs import figures_dir, notebook_run, results_dir
from papa_utils.runner.steps import head_ranking
from papa_utils.runner.sweeps import probe_sweep
from papa_utils.reports.tables import write_results

profile, run_dir = notebook_run(profile, models, tasks, ranking, passes, run_dir)

# %%
rankings = {}
for model_name in profile.models:
    info = describe(cached_model(model_name)[0])
    for task in profile.tasks:
        rankings[model_name, task] = ranking = head_ranking(run_dir, profile, model_name, task)
        counts = profile.sweep_counts(model_name, info["layers"] * info["heads"])  # the profile's shares of heads
        probe_sweep(run_dir, profile, model_name, task, counts, ranking["ranking"])
results = write_results(run_dir, profile)

# %% [markdown]
# ## Performance against the share of input-dependent heads
# Mean over seeds; the band spans the seeds' minimum and maximum. Rightmost point of a line: no head
# replaced (probing baseline); x = 0: every head constant (full PAPA). Horizontal lines in each model's colour:
# its trivial predictor (dotted) and its attention-free probe (dashed), on the same dev data.

# %%
summary = seed_summary(results)
fig = plot_performance_vs_dynamic_heads(summary, references=table1(results, read_statistics(results_dir(run_dir))))
save_figure(fig, figures_dir(run_dir) / "performance_vs_dynamic_heads")

# %% [markdown]
# ## Half of the heads constant: relative drop and share of the learned signal lost (negative = gain)

# %%
half_heads_change(results).round(3)

# %% [markdown]
# ## What ranked the heads, for the first model and task
# The learned gates (low = leans on the constant matrix), or the score of another ranking (low = replaced first).

# %%
(model_name, task), ranking = next(iter(rankings.items()))
values = ranking.get("gates", ranking.get("scores"))
if values is not None:
    save_figure(plot_head_ranking(values, ranking["method"], model_name, task), figures_dir(run_dir) / "head_ranking")
else:
    print(f"{model_name} {task}: heads in a random order")
