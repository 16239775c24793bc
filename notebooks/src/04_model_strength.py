# %% [markdown]
# # 4. Do better models lose more? Table 1 and the paper's three claims
#
# Rebuilds `results/<profile>/table1.{md,tex}`, `results/<profile>/claims.json` and
# `figures/<profile>/relative_drop_vs_baseline.{pdf,png}`.
#
# Relative drop = (baseline - PAPA) / baseline, per model x task (means over seeds), and its correlation
# with the baseline across the grid (Pearson and Spearman, 95% bootstrap intervals over model x task points).

# %% parameters
profile = "smoke"
models = ""
tasks = ""
run_dir = "../runs/smoke"

# %%
import json

from papa_utils.analysis import check_claims, table1, table1_latex, table1_markdown
from papa_utils.figures import plot_relative_drop_vs_baseline, save_figure
from papa_utils.pipeline import all_results, figures_dir, get_profile, results_dir
from papa_utils.runs import atomic_path, write_json

profile = get_profile(profile, models or None, tasks or None)
results = all_results(run_dir, profile)
assert len(results), "no probe results yet: run notebooks 02 and 03 first (make figures does)"

# %% [markdown]
# ## Table 1: probing baseline vs. all heads constant

# %%
t1 = table1(results)
for suffix, text in (("md", table1_markdown(t1)), ("tex", table1_latex(t1))):
    with atomic_path(results_dir(profile) / f"table1.{suffix}") as tmp:
        tmp.write_text(text)
print(table1_markdown(t1))

# %% [markdown]
# ## Relative drop against baseline performance

# %%
claims = check_claims(results)
if claims["points_with_undefined_drop"]:
    print("relative drop undefined (baseline <= 0), left out:", ", ".join(claims["points_with_undefined_drop"]))
fig = plot_relative_drop_vs_baseline(t1.dropna(subset=["relative_drop"]), claims["strength_correlation"])
save_figure(fig, figures_dir(profile) / "relative_drop_vs_baseline")
fig

# %% [markdown]
# ## The three claims, side by side with the paper

# %%
write_json(results_dir(profile) / "claims.json", claims)
c = claims
print(f"1. all heads constant: average relative drop {100 * c['all_heads_average_relative_drop']:.1f}% "
      f"(paper: 8%)")
if c["half_heads_average_relative_drop"] is not None:
    print(f"2. half of the heads constant: average relative drop {100 * c['half_heads_average_relative_drop']:.1f}% "
          f"({c['half_heads_gains']} of {c['half_heads_points']} model x task points gain; paper: little or no drop)")
r = c["strength_correlation"]
print(f"3. baseline vs relative drop: Pearson {r['pearson']['value']:.2f} "
      f"[{r['pearson']['ci_low']:.2f}, {r['pearson']['ci_high']:.2f}], Spearman {r['spearman']['value']:.2f} "
      f"over {r['points']} points (paper: positive, stronger models lose more)")
