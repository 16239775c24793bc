"""From tidy probe results to the paper's numbers: Table 1, relative drops, correlation with strength."""
from __future__ import annotations

import warnings
import zlib

import numpy as np
import pandas as pd


def headline(results: pd.DataFrame, predictor: str | None = "probe") -> pd.DataFrame:
    """Only each task's headline metric (CoLA MCC, MRPC F1, accuracy, NER entity F1, ...), of one predictor
    ("probe", the paper's; "attention_free"; "trivial"), or of all with predictor=None."""
    rows = results[results["headline"]]
    if predictor is not None:
        rows = rows[_predictor(rows) == predictor]
    return rows.copy()


def _predictor(results: pd.DataFrame) -> pd.Series:
    """The predictor column; tables written before the references existed hold the paper's probe only."""
    return results["predictor"] if "predictor" in results else pd.Series("probe", index=results.index)


def seed_summary(results: pd.DataFrame, predictor: str = "probe") -> pd.DataFrame:
    """Mean, std, min and max over seeds per model x task x replaced heads (headline metric, one predictor)."""
    keys = ["model", "task", "metric", "replaced_heads", "dynamic_heads", "total_heads"]
    return (headline(results, predictor).groupby(keys)["value"].agg(["mean", "std", "min", "max", "count"])
            .reset_index())


def relative_drop(baseline, papa):
    """(baseline - PAPA) / baseline, as in the paper (positive = PAPA is worse). Undefined (NaN) where the
    baseline is not positive (e.g. a Matthews correlation of 0): such points are left out of averages."""
    baseline, papa = np.asarray(baseline, dtype=float), np.asarray(papa, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(baseline > 0, (baseline - papa) / baseline, np.nan)


def share_lost(baseline, papa, floor):
    """(baseline - PAPA) / (baseline - floor): the share of what the probe gained over `floor` that PAPA loses
    (1 = PAPA falls to the floor, 0 = it loses nothing, negative = it gains). Undefined (NaN) where the baseline
    is not above the floor: there is nothing to lose."""
    baseline, papa, floor = (np.asarray(v, dtype=float) for v in (baseline, papa, floor))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(baseline > floor, (baseline - papa) / (baseline - floor), np.nan)


def _by_point(summary: pd.DataFrame, which) -> pd.DataFrame:
    return summary[which(summary)].set_index(["model", "task"])


def table1(results: pd.DataFrame, statistics: dict | None = None, n_boot: int = 2000) -> pd.DataFrame:
    """Per model x task: baseline (no head replaced) and full PAPA (all heads), mean and std over seeds, the two
    references (trivial predictor, attention-free probe) and the measures of what PAPA costs:
    - relative_drop: the paper's, (baseline - PAPA) / baseline;
    - learned_lost: share of the learned signal lost, (baseline - PAPA) / (baseline - trivial);
    - contextual_lost: share of the contextual signal lost, (baseline - PAPA) / (baseline - attention-free),
      only where baseline - attention-free exceeds the seed spread (the larger of the two min..max ranges over
      seeds); elsewhere NaN with `contextual_note` "no contextual signal to lose".
    The first two come with 95% bootstrap CIs (`*_low`, `*_high`; ``point_draws``): over seeds, and with
    per-example `statistics` over dev examples too (`dev_resampled`), paired between baseline, PAPA and floor.
    Reference columns are NaN when the results hold no references (runs made before they existed)."""
    s = seed_summary(results)
    base = _by_point(s, lambda t: t.replaced_heads == 0)
    papa = _by_point(s, lambda t: t.replaced_heads == t.total_heads)
    table = pd.DataFrame({"metric": base["metric"], "baseline": base["mean"], "baseline_std": base["std"],
                          "papa": papa["mean"], "papa_std": papa["std"], "seeds": base["count"]}).dropna(
        subset=["baseline", "papa"])
    trivial = _by_point(seed_summary(results, "trivial"), lambda t: t.replaced_heads == 0)
    free = _by_point(seed_summary(results, "attention_free"), lambda t: t.replaced_heads == 0)
    table["trivial"] = trivial["mean"].reindex(table.index)
    table["attention_free"] = free["mean"].reindex(table.index)
    table["attention_free_std"] = free["std"].reindex(table.index)
    table["relative_drop"] = relative_drop(table["baseline"], table["papa"])
    table["learned_lost"] = share_lost(table["baseline"], table["papa"], table["trivial"])
    spread = np.maximum(base["max"] - base["min"], (free["max"] - free["min"]).reindex(base.index)).reindex(table.index)
    contextual = (table["baseline"] - table["attention_free"]) > spread
    table["contextual_lost"] = np.where(contextual, share_lost(table["baseline"], table["papa"],
                                                               table["attention_free"]), np.nan)
    table["contextual_note"] = np.where(table["attention_free"].isna(), "no reference",
                                        np.where(contextual, "", "no contextual signal to lose"))
    draws = point_draws(results, statistics, "all", n=n_boot)
    for name, measure in (("relative_drop", _relative), ("learned_lost", _learned)):
        bounds = {point: interval(measure(*d["draws"])) for point, d in draws.items()}
        table[f"{name}_low"] = [bounds.get(i, (np.nan, np.nan))[0] for i in table.index]
        table[f"{name}_high"] = [bounds.get(i, (np.nan, np.nan))[1] for i in table.index]
    table["dev_resampled"] = [bool(draws[i]["dev_resampled"]) if i in draws else False for i in table.index]
    return table.reset_index()


def half_heads_change(results: pd.DataFrame) -> pd.DataFrame:
    """Half of the heads replaced (k = round(total / 2)), per model x task: the paper's relative drop and the
    share of the learned signal lost (against the trivial predictor, when the results hold it)."""
    s = seed_summary(results)
    base = _by_point(s, lambda t: t.replaced_heads == 0)["mean"]
    half = _by_point(s, lambda t: t.replaced_heads == (t.total_heads / 2).round())["mean"]
    both = pd.DataFrame({"baseline": base, "half": half}).dropna()
    trivial = _by_point(seed_summary(results, "trivial"), lambda t: t.replaced_heads == 0)["mean"]
    both["trivial"] = trivial.reindex(both.index)
    both["relative_drop"] = relative_drop(both["baseline"], both["half"])
    both["learned_lost"] = share_lost(both["baseline"], both["half"], both["trivial"])
    return both.reset_index()


def statistics_key(model: str, task: str, predictor: str, replaced_heads: int, seed) -> str:
    """How a result's per-example dev statistics are filed (``pipeline.write_results``'s dev_statistics.npz)."""
    return f"{model}|{task}|{predictor}|{int(replaced_heads)}|{seed}"


def point_draws(results: pd.DataFrame, statistics: dict | None = None, replaced: str = "all", n: int = 2000,
                seed: int = 0) -> dict:
    """Per model x task, the baseline, the configuration `replaced` ("all" or "half" of the heads) and the trivial
    predictor: {"estimates": their means over seeds on the whole dev set (3 values), "draws": [3, n] bootstrap
    replicates, "dev_resampled": bool}.

    A replicate resamples the seeds (with replacement) and, where `statistics` (``statistics_key`` -> per-example
    counts, ``metrics.example_statistics``) hold every value of the point, the dev examples too, with Poisson(1)
    weights per example (the Poisson bootstrap). It is paired: one replicate applies the same seed indices and
    the same dev weights to the baseline, the configuration and the floor, so what they share cancels."""
    from .metrics import metric_from_statistics

    rows = headline(results, None)
    predictor = _predictor(rows)
    out = {}
    for (model, task), part in rows.groupby(["model", "task"], sort=True):
        # every point draws from generators named by what it is, so its replicates do not depend on which other
        # points are there; the dev weights are named by the task and dev size only: models scored on the same dev
        # examples share them, and the dev noise they share stays in the averages' CIs
        rng = np.random.default_rng([seed, zlib.crc32(f"{model}|{task}|{replaced}".encode())])
        p = predictor.loc[part.index]
        total = part.total_heads.iloc[0]
        k = total if replaced == "all" else round(total / 2)
        pick = lambda who, heads: part[(p == who) & (part.replaced_heads == heads)].set_index("seed")["value"]  # noqa
        base, other, trivial = pick("probe", 0), pick("probe", k), pick("trivial", 0)
        seeds = sorted(set(base.index) & set(other.index))
        if not seeds:
            continue
        metric = part.metric.iloc[0]
        floor = float(trivial.iloc[0]) if len(trivial) else np.nan
        keys = [[statistics_key(model, task, "probe", heads, s) for s in seeds] for heads in (0, k)]
        floor_key = statistics_key(model, task, "trivial", 0, trivial.index[0]) if len(trivial) else None
        resampled = statistics is not None and floor_key in statistics and all(
            key in statistics for group in keys for key in group)
        if resampled:
            n_dev = len(statistics[floor_key])
            dev_rng = np.random.default_rng([seed, zlib.crc32(task.encode()), n_dev])
            weights = dev_rng.poisson(1.0, (n, n_dev)).astype(np.float32)
            replicate = lambda key: metric_from_statistics(metric, weights @ statistics[key].astype(np.float32))  # noqa
            values = [np.stack([replicate(key) for key in group], axis=1) for group in keys]  # [n, seeds] each
            floor_draws = replicate(floor_key)
        else:
            values = [np.tile(v.loc[seeds].to_numpy(float), (n, 1)) for v in (base, other)]
            floor_draws = np.full(n, floor)
        chosen = rng.integers(0, len(seeds), (n, len(seeds)))
        draws = [np.take_along_axis(v, chosen, axis=1).mean(1) for v in values] + [floor_draws]
        out[model, task] = {"estimates": np.array([base.loc[seeds].mean(), other.loc[seeds].mean(), floor]),
                            "draws": np.stack(draws), "dev_resampled": resampled}
    return out


def interval(samples, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates. Undefined (NaN) replicates, e.g. where a resampled baseline
    falls to the floor, are left out only while they are fewer than one tail, (1 - level) / 2 of all: beyond that,
    leaving them out would cut a tail off, and the interval is undefined (NaN)."""
    samples = np.asarray(samples, dtype=float)
    undefined = np.isnan(samples)
    if not len(samples) or undefined.mean() > (1 - level) / 2:
        return float("nan"), float("nan")
    samples = samples[~undefined]
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_average(points: dict, measure, seed: int = 0, level: float = 0.95) -> dict:
    """Average of `measure(baseline, configuration, floor)` (vectorised) over the points of ``point_draws``, with a
    percentile CI whose replicates also resample the points (each replicate picks points with replacement and
    takes each picked point's own replicate). Points where the measure is undefined (NaN) are left out and
    counted; `dev_resampled_points` says at how many the dev examples were resampled."""
    estimates = np.array([float(measure(*p["estimates"])) for p in points.values()], dtype=float)
    defined = ~np.isnan(estimates)
    kept = [p for p, ok in zip(points.values(), defined) if ok]
    out = {"value": float(estimates[defined].mean()) if defined.any() else float("nan"),
           "points": int(defined.sum()), "undefined_points": int((~defined).sum()),
           "dev_resampled_points": sum(p["dev_resampled"] for p in kept), "ci_low": float("nan"),
           "ci_high": float("nan")}
    if len(kept) < 2:
        return out
    replicates = np.stack([measure(*p["draws"]) for p in kept], axis=1)  # [n, points]
    chosen = np.random.default_rng(seed).integers(0, len(kept), replicates.shape)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate where every picked point is undefined
        averages = np.nanmean(np.take_along_axis(replicates, chosen, axis=1), axis=1)
    out["ci_low"], out["ci_high"] = interval(averages, level)
    return out


def _relative(base, papa, floor):
    return relative_drop(base, papa)


def _learned(base, papa, floor):
    return share_lost(base, papa, floor)


def curve_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Learning curve (``pipeline.curve_table``) per model x task x training size: mean over seeds of the
    baseline, PAPA, attention-free probe and trivial predictor, the paper's relative drop and the share of the
    learned signal lost."""
    means = curve.pivot_table(index=["model", "task", "metric", "train_examples"], columns="configuration",
                              values="value", aggfunc="mean").reset_index()
    means.columns.name = None
    means["relative_drop"] = relative_drop(means["baseline"], means["PAPA"])
    means["learned_lost"] = share_lost(means["baseline"], means["PAPA"], means["trivial"])
    means["contextual_lost"] = share_lost(means["baseline"], means["PAPA"], means["attention_free"])
    return means


def curve_markdown(summary: pd.DataFrame) -> str:
    """The learning curve (``curve_summary``) as a Markdown table, one row per task x training size."""
    lines = ["| model | task | metric | training examples | trivial | attention-free | baseline | PAPA | relative drop "
             "| learned signal lost |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary.sort_values(["task", "train_examples"]).itertuples():
        lines.append(f"| {r.model} | {r.task} | {r.metric} | {r.train_examples} | {r.trivial:.1f} | "
                     f"{r.attention_free:.1f} | {r.baseline:.1f} | {r.PAPA:.1f} | {_pct(r.relative_drop)} | "
                     f"{_pct(r.learned_lost)} |")
    return "\n".join(lines) + "\n"


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


def _pct(value) -> str:
    return "undefined" if value is None or np.isnan(value) else f"{100 * value:.1f}%"


def _pct_ci(value, low, high) -> str:
    """'12.3% [4.5, 20.1]' (the CI left out where undefined)."""
    if value is None or np.isnan(value) or np.isnan(low):
        return _pct(value)
    return f"{100 * value:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _average_note(values: pd.Series, why: str) -> str:
    """'**x%** over n' (and how many were left out, and why)."""
    left_out = int(values.isna().sum())
    note = f" over {len(values) - left_out}" + (f"; {left_out} left out: {why}" if left_out else "")
    return f"**{_pct(values.mean()) if len(values) - left_out else 'undefined'}**{note}"


def table1_markdown(table: pd.DataFrame) -> str:
    """Table 1 as Markdown: baseline and PAPA (mean ± std over seeds), the trivial and attention-free references
    on the same dev data, the paper's relative drop and the share of the learned signal lost with their 95%
    bootstrap CIs, the share of the contextual signal lost; averages say over how many points they are taken."""
    lines = ["| model | task | metric | trivial | attention-free | baseline | PAPA (all heads constant) | relative drop "
             "| learned signal lost | contextual signal lost |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        contextual = _pct(r.contextual_lost) if r.contextual_note == "" else r.contextual_note
        free = "–" if np.isnan(r.attention_free) else f"{r.attention_free:.1f} ± {r.attention_free_std:.1f}"
        trivial = "–" if np.isnan(r.trivial) else f"{r.trivial:.1f}"
        lines.append(f"| {r.model} | {r.task} | {r.metric} | {trivial} | {free} | {r.baseline:.1f} ± "
                     f"{r.baseline_std:.1f} | {r.papa:.1f} ± {r.papa_std:.1f} | "
                     f"{_pct_ci(r.relative_drop, r.relative_drop_low, r.relative_drop_high)} | "
                     f"{_pct_ci(r.learned_lost, r.learned_lost_low, r.learned_lost_high)} | {contextual} |")
    lines.append(f"| **average** | | | | | | | {_average_note(table.relative_drop, 'baseline <= 0')} | "
                 f"{_average_note(table.learned_lost, 'baseline at or below the trivial predictor')} | "
                 f"{_average_note(table.contextual_lost, 'no contextual signal to lose')} |")
    return "\n".join(lines) + "\n"


def table1_latex(table: pd.DataFrame) -> str:
    def pct(value):
        return "--" if np.isnan(value) else f"{100 * value:.1f}\\%"

    def num(value):
        return "--" if np.isnan(value) else f"{value:.1f}"

    rows = [r"\begin{tabular}{lllrrrrrrr}", r"\toprule",
            r"model & task & metric & trivial & attn.-free & baseline & PAPA & rel.\ drop & learned lost & "
            r"context lost \\", r"\midrule"]
    for r in table.itertuples():
        rows.append(f"{r.model} & {r.task} & {r.metric.replace('_', ' ')} & {num(r.trivial)} & "
                    f"{num(r.attention_free)} & {r.baseline:.1f} & {r.papa:.1f} & "
                    f"{_pct_ci(r.relative_drop, r.relative_drop_low, r.relative_drop_high).replace('%', chr(92) + '%')} & "
                    f"{_pct_ci(r.learned_lost, r.learned_lost_low, r.learned_lost_high).replace('%', chr(92) + '%')} & "
                    f"{pct(r.contextual_lost)} \\\\")
    rows += [r"\midrule", f"average & & & & & & & {pct(table.relative_drop.mean())} & {pct(table.learned_lost.mean())} & "
             f"{pct(table.contextual_lost.mean())} \\\\", r"\bottomrule", r"\end{tabular}"]
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


def check_claims(results: pd.DataFrame, statistics: dict | None = None, n_boot: int = 2000) -> dict:
    """The paper's three claims, measured on these results.

    Claims 1 and 2 (all / half of the heads constant): the paper's average relative drop and the average share
    of the learned signal lost (against the trivial predictor), each with a bootstrap CI over points, seeds and,
    with per-example `statistics`, dev examples (``point_draws``, ``bootstrap_average``). Claim 3's verdict is read within tasks (``strength_within_tasks``); the correlation
    pooled over every model x task point, which mixes metrics and dev sets, is kept beside it."""
    t1 = table1(results, statistics, n_boot)
    half = half_heads_change(results)
    defined = t1.dropna(subset=["relative_drop"])
    out = {"paper_all_heads_average_relative_drop": 0.08,
           "points_with_undefined_drop": [f"{r.model} {r.task}" for r in t1[t1.relative_drop.isna()].itertuples()]}
    for name, replaced in (("all_heads", "all"), ("half_heads", "half")):
        points = point_draws(results, statistics, replaced, n=n_boot)
        out[name] = {"relative_drop": bootstrap_average(points, _relative),
                     "learned_signal_lost": bootstrap_average(points, _learned)}
    out["half_heads"]["gains"] = int((half["relative_drop"] < 0).sum())
    out["all_heads"]["contextual_signal_lost"] = {
        "value": float(t1.contextual_lost.mean()) if t1.contextual_lost.notna().any() else None,
        "points": int(t1.contextual_lost.notna().sum()),
        "no_contextual_signal": [f"{r.model} {r.task}" for r in t1.itertuples()
                                 if r.contextual_note == "no contextual signal to lose"]}
    within = strength_within_tasks(t1)
    out.update(strength_within_tasks=within, stronger_models_lose_more=within["holds"],
               pooled_strength_correlation=bootstrap_correlation(defined["baseline"], defined["relative_drop"],
                                                                 n=n_boot))
    return out


def _missing(value) -> bool:
    """Undefined: None (strict JSON's null) or NaN."""
    return value is None or bool(np.isnan(value))


def _ci(c: dict) -> str:
    return f"{c['value']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"


def _average(a: dict) -> str:
    if not a["points"]:
        return "undefined"
    ci = "" if _missing(a["ci_low"]) else f" [{100 * a['ci_low']:.1f}, {100 * a['ci_high']:.1f}]"
    left = f"; {a['undefined_points']} undefined" if a["undefined_points"] else ""
    return f"{100 * a['value']:.1f}%{ci} over {a['points']} points{left}"


def claim_statements(claims: dict) -> dict:
    """One sentence per claim, measured, from ``check_claims``'s output: what notebook 4 prints and what the
    README's results block shows, so the two cannot disagree."""
    c = claims
    out = {}
    for name in ("all_heads", "half_heads"):
        a = c[name]
        if name == "all_heads" or a["relative_drop"]["points"] or a["learned_signal_lost"]["points"]:
            out[name] = (f"relative drop {_average(a['relative_drop'])}; share of the learned signal lost "
                         f"{_average(a['learned_signal_lost'])}")
    if "half_heads" in out:
        out["half_heads"] += f"; {c['half_heads']['gains']} points gain"
    w, r = c["strength_within_tasks"], c["pooled_strength_correlation"]
    verdict = {True: "holds", False: "does not hold", None: "cannot be measured"}[c["stronger_models_lose_more"]]
    per_task = ", ".join(f"{t} {v['spearman']:+.2f}" for t, v in w["tasks"].items() if v["spearman"] is not None)
    out["strength"] = (f"within tasks it {verdict}: the drop grows with the baseline across models in "
                       f"{w['tasks_where_it_holds']} of {w['tasks_measured']} tasks"
                       + (f" (Spearman per task: {per_task})" if per_task else "")
                       + (f"; pooled over all {r['points']} points (mixed metrics): Pearson {_ci(r['pearson'])}, "
                          f"Spearman {_ci(r['spearman'])}" if r["points"] > 2 else ""))
    return out


def ranking_family(name: str) -> str:
    """"random0", "random1", ... -> "random"; other ranking names stay."""
    return "random" if str(name).startswith("random") else str(name)


def ranking_points(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per model x task x replaced heads x ranking family: mean, min and max of the headline metric (over seeds;
    for "random" over its orders) and how many values; k = 0 and all heads (ranking "none") are repeated under
    every family so that each family's line runs from full PAPA to the baseline."""
    frame = comparison.assign(family=comparison["ranking"].map(ranking_family))
    shared = frame[frame.family == "none"]
    families = [f for f in dict.fromkeys(frame.family) if f != "none"]
    frame = pd.concat([frame[frame.family != "none"]] + [shared.assign(family=f) for f in families])
    keys = ["model", "task", "metric", "family", "replaced_heads", "dynamic_heads", "total_heads"]
    return frame.groupby(keys)["value"].agg(["mean", "min", "max", "count"]).reset_index()


def ranking_verdict(comparison: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each ranking against the gates over the partial points (model x task x k = 1/2, 7/8, 15/16): the mean
    difference of the headline metric (ranking - gates, metric points, with a bootstrap CI over points), and at
    how many points it is as good as the gates within their seed spread (its mean >= the gates' worst seed)."""
    points = ranking_points(comparison)
    partial = points[(points.replaced_heads > 0) & (points.replaced_heads < points.total_heads)]
    if not (partial.family == "gates").any():
        return pd.DataFrame(columns=["ranking", "points", "mean_difference", "ci_low", "ci_high",
                                     "as_good_as_gates", "share_as_good"])
    gates = partial[partial.family == "gates"].set_index(["model", "task", "replaced_heads"])
    rows = []
    rng = np.random.default_rng(seed)
    for family, part in partial[partial.family != "gates"].groupby("family", sort=False):
        part = part.set_index(["model", "task", "replaced_heads"])
        common = part.index.intersection(gates.index)
        diff = (part.loc[common, "mean"] - gates.loc[common, "mean"]).to_numpy(float)
        as_good = int((part.loc[common, "mean"] >= gates.loc[common, "min"]).sum())
        draws = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n_boot if len(diff) > 1 else 0)]
        low, high = np.quantile(draws, [0.025, 0.975]) if draws else (np.nan, np.nan)
        rows.append({"ranking": family, "points": len(diff), "mean_difference": float(diff.mean()) if len(diff) else np.nan,
                     "ci_low": float(low), "ci_high": float(high), "as_good_as_gates": as_good,
                     "share_as_good": as_good / len(diff) if len(diff) else np.nan})
    return pd.DataFrame(rows)


def ranking_markdown(verdict: pd.DataFrame, agreement: pd.DataFrame) -> str:
    """The ranking comparison for the README: each ranking's verdict against the gates, then its agreement
    with the gates and its cost, averaged per model."""
    lines = ["| ranking | partial points | mean difference to the gates (metric points, 95% CI) | "
             "as good as the gates (within their seed spread) |", "|---|---|---|---|"]
    for r in verdict.itertuples():
        lines.append(f"| {r.ranking} | {r.points} | {r.mean_difference:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] | "
                     f"{r.as_good_as_gates} of {r.points} ({100 * r.share_as_good:.0f}%) |")
    lines += ["", "| model | ranking | Spearman with the gates (mean over tasks; min to max) | first halves shared | "
              "seconds (this ranking / the gates), per task |", "|---|---|---|---|---|"]
    for (model, ranking), part in agreement.groupby(["model", "ranking"], sort=False):
        lines.append(f"| {model} | {ranking} | {part.spearman.mean():+.2f} ({part.spearman.min():+.2f} to "
                     f"{part.spearman.max():+.2f}) | {100 * part.first_half_overlap.mean():.0f}% | "
                     f"{part.seconds.mean():.1f} / {part.gates_seconds.mean():.1f} |")
    return "\n".join(lines) + "\n"
