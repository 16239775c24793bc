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
# # 6. Can a cheap statistic replace the gates?
#
# Rebuilds `figures/ranking_comparison.{pdf,png}`, `results/ranking_comparison.csv`,
# `results/ranking_agreement.csv`, `results/half_heads_by_ranking.csv` and (when the profile asks)
# `results/ranking_stability.csv` in the run folder.
#
# The paper replaces heads in the order of trained gates: one gate per head, trained jointly with a probe,
# a backward pass through the whole backbone. Notebook 0 measures, for every head, how far its attention on
# each input is from the constant matrix that would replace it (the *input-dependence score*: the mean
# Jensen–Shannon divergence between its rows and their PAPA substitutes), with one forward pass and no
# training. If the heads with the lowest score are the ones that can go, the gates are not needed.
#
# For every (model, task) this notebook compares four orders of the heads:
# - **gates** (the paper's);
# - **input dependence** (ascending: the least input-dependent heads are replaced first);
# - **variance**: the mean squared distance of a head's rows from their substitute, the statistic of later work
#   that freezes the heads whose attention varies least across inputs;
# - **random** orders (the null: what any order achieves).
#
# Read the verdict table first: a ranking is *as good as the gates* at a point when its mean is at least the
# gates' worst seed. If random orders are as good as the gates too, the choice of heads does not matter at
# these probe sizes, whatever the ranking.
#
# The comparison runs when the profile names rankings to compare: the `smoke` profile does on its one model, the
# `cpu-robustness` profile on every cell of the `cpu` grid. The `cpu` profile ranks by input dependence and
# compares nothing.

# %% tags=["parameters"]
profile = "smoke"
models = ""
tasks = ""
ranking = ""  # how the partial sweep orders the heads (empty: the profile's)
passes = ""  # backbone passes: packed (real tokens only) or padded (the whole layout); empty: the profile's
run_dir = ""  # empty: runs/<run name> ($PAPA_RUNS_DIR instead of runs/ when set)

# %%
from papa_utils.reports.statistics import ranking_points, ranking_verdict
from papa_utils.reports.rendering import half_heads_markdown, ranking_markdown
from papa_utils.reports.figures import plot_ranking_comparison, save_figure
from papa_utils.settings.profiles import why_absent
from papa_utils.records.runs import figures_dir, notebook_run, results_dir
from papa_utils.runner.sweeps import compare_rankings
from papa_utils.reports.tables import (half_heads_table, ranking_agreement_table, ranking_comparison_table,
                               ranking_stability_table, save_table)

profile, run_dir = notebook_run(profile, models, tasks, ranking, passes, run_dir)
if why_absent(profile, "ranking comparison") is None:
    print(f"main ranking: {profile.ranking}; compared: {', '.join(profile.compare_rankings)} "
          f"({profile.random_orders} random orders) on {', '.join(profile.compare_models)}")
    for model_name in profile.models:  # every ranking, and the sweep under each, that the tables below read
        for task in profile.tasks:
            compare_rankings(run_dir, profile, model_name, task)
else:
    print(why_absent(profile, "ranking comparison"))

# %% [markdown]
# ## Agreement with the gates, and cost, for every model and task
# Spearman correlation between the positions of the heads in the two rankings, and the share of the first half
# (the heads replaced at k = 1/2) that both rankings pick. Seconds: what each ranking cost in this run (random:
# nothing).

# %%
agreement = ranking_agreement_table(run_dir, profile)
save_table(agreement, results_dir(run_dir) / "ranking_agreement.csv")
agreement.round(3) if len(agreement) else None

# %% [markdown]
# ## Is the head ranking stable?
# The profile's ranking made again from a disjoint training subset of the same size and, for the gates, trained
# with another seed (another initialisation and data order; a score has no seed): if these rankings disagree,
# the ranking orders noise, and no other ranking can be expected to agree with it either. (Only when the profile
# asks for it: one or two more rankings per model and task.)

# %%
if profile.ranking_stability:
    stability = ranking_stability_table(run_dir, profile)
    save_table(stability, results_dir(run_dir) / "ranking_stability.csv")
    print(stability.round(3).to_string(index=False))

# %% [markdown]
# ## The sweep under each ranking

# %%
comparison = ranking_comparison_table(run_dir, profile)
save_table(comparison, results_dir(run_dir) / "ranking_comparison.csv")
if len(comparison):
    fig = plot_ranking_comparison(ranking_points(comparison))
    save_figure(fig, figures_dir(run_dir) / "ranking_comparison")

# %% [markdown]
# ## Verdict
# Mean difference to the gates over the points where the rankings are compared (the profile's `compare_fractions`,
# by default every share of its sweep strictly between none and all of the heads; 1/2 in the `cpu` profiles), in metric points,
# with a bootstrap CI over points; and the number of points where the ranking is as good as the gates within
# their seed spread.

# %%
if len(comparison):
    verdict = ranking_verdict(comparison)
    print(ranking_markdown(verdict, agreement))

# %% [markdown]
# ## Claim 2 under each ranking
# The paper picks the half of the heads that stays input-dependent with its gates; the main sweep (notebooks 3
# and 4) picks it by the profile's ranking. Here claim 2 (half of the heads constant: little or no drop) is
# measured again with the half each ranking picks, over the same cells (those where full PAPA loses measurably)
# and with the same paired bootstrap over seeds and dev examples. If the verdict of a model changes with the ranking,
# the choice of heads, not constant attention as such, decides it.

# %%
if len(comparison):
    by_ranking = half_heads_table(run_dir, profile)
    save_table(by_ranking, results_dir(run_dir) / "half_heads_by_ranking.csv")
    print(half_heads_markdown(by_ranking))
