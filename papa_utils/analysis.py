"""From tidy probe results to the paper's numbers: Table 1, relative drops, correlation with strength."""
from __future__ import annotations

import numpy as np
import pandas as pd


def headline(results: pd.DataFrame) -> pd.DataFrame:
    """Only each task's headline metric (CoLA MCC, MRPC F1, accuracy, NER entity F1, ...)."""
    return results[results["headline"]].copy()


def seed_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, min and max over seeds per model x task x replaced heads (headline metric)."""
    keys = ["model", "task", "metric", "replaced_heads", "dynamic_heads", "total_heads"]
    return (headline(results).groupby(keys)["value"].agg(["mean", "std", "min", "max", "count"])
            .reset_index())


def relative_drop(baseline, papa):
    """(baseline - PAPA) / baseline, as in the paper (positive = PAPA is worse). Undefined (NaN) where the
    baseline is not positive (e.g. a Matthews correlation of 0): such points are left out of averages."""
    baseline, papa = np.asarray(baseline, dtype=float), np.asarray(papa, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(baseline > 0, (baseline - papa) / baseline, np.nan)


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """Per model x task: baseline (no head replaced) and full PAPA (all heads), mean over seeds, and the
    relative drop of the means."""
    s = seed_summary(results)
    base = s[s.replaced_heads == 0].set_index(["model", "task"])
    papa = s[s.replaced_heads == s.total_heads].set_index(["model", "task"])
    table = pd.DataFrame({"metric": base["metric"], "baseline": base["mean"], "baseline_std": base["std"],
                          "papa": papa["mean"], "papa_std": papa["std"], "seeds": base["count"]}).dropna(
        subset=["baseline", "papa"])
    table["relative_drop"] = relative_drop(table["baseline"], table["papa"])
    return table.reset_index()


def half_heads_change(results: pd.DataFrame) -> pd.DataFrame:
    """Relative drop when half of the heads are replaced (k = round(total / 2)), per model x task."""
    s = seed_summary(results)
    base = s[s.replaced_heads == 0].set_index(["model", "task"])["mean"]
    half = s[s.replaced_heads == (s.total_heads / 2).round()].set_index(["model", "task"])["mean"]
    both = pd.DataFrame({"baseline": base, "half": half}).dropna()
    both["relative_drop"] = relative_drop(both["baseline"], both["half"])
    return both.reset_index()


def bootstrap_correlation(x, y, n: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Pearson and Spearman correlation of x and y with percentile bootstrap confidence intervals."""
    from scipy.stats import pearsonr, spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    out = {"points": len(x)}
    for name, fn in (("pearson", pearsonr), ("spearman", spearmanr)):
        value = float(fn(x, y)[0]) if len(x) > 2 else float("nan")
        samples = []
        for _ in range(n if len(x) > 2 else 0):
            i = rng.integers(0, len(x), len(x))
            if np.std(x[i]) > 0 and np.std(y[i]) > 0:
                samples.append(fn(x[i], y[i])[0])
        low, high = (np.quantile(samples, [(1 - level) / 2, (1 + level) / 2]) if samples else (np.nan, np.nan))
        out[name] = {"value": value, "ci_low": float(low), "ci_high": float(high)}
    return out


def table1_markdown(table: pd.DataFrame) -> str:
    """Table 1 as Markdown: baseline / PAPA (mean ± std over seeds) and relative drop, with the average."""
    lines = ["| model | task | metric | baseline | PAPA (all heads constant) | relative drop |",
             "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        drop = "undefined" if np.isnan(r.relative_drop) else f"{100 * r.relative_drop:.1f}%"
        lines.append(f"| {r.model} | {r.task} | {r.metric} | {r.baseline:.1f} ± {r.baseline_std:.1f} | "
                     f"{r.papa:.1f} ± {r.papa_std:.1f} | {drop} |")
    undefined = int(table.relative_drop.isna().sum())
    note = f" (over {len(table) - undefined}; {undefined} with baseline <= 0 left out)" if undefined else ""
    lines.append(f"| **average** | | | | | **{100 * table.relative_drop.mean():.1f}%**{note} |")
    return "\n".join(lines) + "\n"


def table1_latex(table: pd.DataFrame) -> str:
    rows = [r"\begin{tabular}{lllrrr}", r"\toprule",
            r"model & task & metric & baseline & PAPA & rel.\ drop \\", r"\midrule"]
    for r in table.itertuples():
        drop = "--" if np.isnan(r.relative_drop) else f"{100 * r.relative_drop:.1f}\\%"
        rows.append(f"{r.model} & {r.task} & {r.metric.replace('_', ' ')} & {r.baseline:.1f} & {r.papa:.1f} & "
                    f"{drop} \\\\")
    rows += [r"\midrule", f"average & & & & & {100 * table.relative_drop.mean():.1f}\\% \\\\", r"\bottomrule",
             r"\end{tabular}"]
    return "\n".join(rows) + "\n"


def strength_within_tasks(t1: pd.DataFrame) -> dict:
    """Claim 3 read within each task: across the models of one task (one metric, one dev set), does the
    relative drop grow with the baseline? Per task the Spearman correlation of baseline and relative drop over
    its models (undefined with fewer than two models or with ties throughout); the claim holds when it is
    positive in more than half of the tasks where it is defined."""
    from scipy.stats import spearmanr

    tasks = {}
    for task, part in t1.dropna(subset=["relative_drop"]).groupby("task", sort=False):
        value = None
        if len(part) >= 2 and part.baseline.nunique() > 1 and part.relative_drop.nunique() > 1:
            value = float(spearmanr(part.baseline, part.relative_drop)[0])
        tasks[task] = {"models": len(part), "spearman": value}
    measured = [t["spearman"] for t in tasks.values() if t["spearman"] is not None]
    holding = sum(v > 0 for v in measured)
    return {"tasks": tasks, "tasks_measured": len(measured), "tasks_where_it_holds": holding,
            "holds": None if not measured else holding > len(measured) / 2}


def check_claims(results: pd.DataFrame, n_boot: int = 2000) -> dict:
    """The paper's three claims, measured on these results. Claim 3's verdict is read within tasks
    (``strength_within_tasks``); the correlation pooled over every model x task point, which mixes metrics and
    dev sets, is kept beside it as a secondary number."""
    t1 = table1(results)
    half = half_heads_change(results)
    defined = t1.dropna(subset=["relative_drop"])
    within = strength_within_tasks(t1)
    return {
        "all_heads_average_relative_drop": float(defined["relative_drop"].mean()),
        "all_heads_points": len(defined),
        "points_with_undefined_drop": [f"{r.model} {r.task}" for r in t1[t1.relative_drop.isna()].itertuples()],
        "paper_all_heads_average_relative_drop": 0.08,
        "half_heads_average_relative_drop": float(half["relative_drop"].mean()) if len(half) else None,
        "half_heads_gains": int((half["relative_drop"] < 0).sum()), "half_heads_points": len(half),
        "strength_within_tasks": within,
        "stronger_models_lose_more": within["holds"],
        "pooled_strength_correlation": bootstrap_correlation(defined["baseline"], defined["relative_drop"], n=n_boot),
    }


def _ci(c: dict) -> str:
    return f"{c['value']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"


def claim_statements(claims: dict) -> dict:
    """One sentence per claim, measured, from ``check_claims``'s output: what notebook 4 prints and what the
    README's results block shows, so the two cannot disagree."""
    c = claims
    out = {"all_heads": f"average relative drop {100 * c['all_heads_average_relative_drop']:.1f}% over "
                        f"{c['all_heads_points']} points"}
    if c["half_heads_average_relative_drop"] is not None:
        out["half_heads"] = (f"average relative drop {100 * c['half_heads_average_relative_drop']:.1f}% (negative: a "
                             f"gain); {c['half_heads_gains']} of {c['half_heads_points']} points gain")
    w, r = c["strength_within_tasks"], c["pooled_strength_correlation"]
    verdict = {True: "holds", False: "does not hold", None: "cannot be measured"}[c["stronger_models_lose_more"]]
    per_task = ", ".join(f"{t} {v['spearman']:+.2f}" for t, v in w["tasks"].items() if v["spearman"] is not None)
    out["strength"] = (f"within tasks it {verdict}: the drop grows with the baseline across models in "
                       f"{w['tasks_where_it_holds']} of {w['tasks_measured']} tasks"
                       + (f" (Spearman per task: {per_task})" if per_task else "")
                       + (f"; pooled over all {r['points']} points (mixed metrics): Pearson {_ci(r['pearson'])}, "
                          f"Spearman {_ci(r['spearman'])}" if r["points"] > 2 else ""))
    return out
