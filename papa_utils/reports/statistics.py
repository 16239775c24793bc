"""From tidy probe results to the paper's numbers: Table 1, relative drops and their paired bootstrap replicates,
and the tables that show them. The rules that turn these numbers into verdicts live in ``verdicts``."""
from __future__ import annotations

import functools
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd


DEGENERATE_SHARE = 0.99  # a probe that puts at least 99% of its dev predictions in one class predicts one class
# reported in Table 1 beside the headline metric, not used by the claims (which keep the paper's metric)
SECONDARY_METRICS = {"mrpc": ("accuracy",)}


def headline(results: pd.DataFrame, predictor: str | None = "probe", metric: str | None = None) -> pd.DataFrame:
    """Only each task's headline metric (CoLA MCC, MRPC F1, accuracy, NER entity F1, ...), or only `metric`, of
    one predictor ("probe", the paper's; "attention_free"; "trivial"), or of all with predictor=None."""
    rows = results[results["headline"]] if metric is None else results[results["metric"] == metric]
    if predictor is not None:
        rows = rows[predictor_column(rows) == predictor]
    return rows.copy()


def predictor_column(results: pd.DataFrame) -> pd.Series:
    """The predictor column; tables written before the references existed hold the paper's probe only."""
    return results["predictor"] if "predictor" in results else pd.Series("probe", index=results.index)


def seed_summary(results: pd.DataFrame, predictor: str = "probe", metric: str | None = None) -> pd.DataFrame:
    """Mean, std, min and max over seeds per model x task x replaced heads (headline metric, or `metric`; one
    predictor), and on how many seeds the probe predicted one class (``DEGENERATE_SHARE``)."""
    keys = ["model", "task", "metric", "replaced_heads", "dynamic_heads", "total_heads"]
    rows = headline(results, predictor, metric)
    share = rows["prediction_share"] if "prediction_share" in rows else pd.Series(np.nan, index=rows.index)
    rows = rows.assign(degenerate=pd.to_numeric(share, errors="coerce") >= DEGENERATE_SHARE)
    return (rows.groupby(keys).agg(mean=("value", "mean"), std=("value", "std"), min=("value", "min"),
                                   max=("value", "max"), count=("value", "count"),
                                   degenerate=("degenerate", "sum")).reset_index())


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
      on the cells in the claims (whose baseline clears the attention-free probe by more than its noise) where
      the attention-free probe does not predict one class; elsewhere NaN, `contextual_note` says why.
    The first two come with 95% bootstrap CIs (`*_low`, `*_high`; ``point_draws``): over seeds, and with
    per-example `statistics` over dev examples too (`dev_resampled`), paired between baseline, PAPA and floor.
    `signal_note` is "" where the baseline clears both references by more than its own noise
    (``signal_notes``), else why not; `in_claims` marks the rows the claims average (headline metric, signal).
    `*_degenerate`: on how many seeds that probe predicted one class. Rows of ``SECONDARY_METRICS`` (MRPC
    accuracy; `headline` False) follow their task's headline row, outside the claims. Reference columns are NaN
    when the results hold no references (runs made before they existed)."""
    parts = [_table1_rows(results, statistics, n_boot, None).assign(headline=True)]
    for task, metrics in SECONDARY_METRICS.items():
        for metric in metrics:
            # the task's rows of that metric, with its headline rows, whose per-example counts it is derived from
            rows = results[(results.task == task) & ((results.metric == metric) | results.headline)]
            if (rows.metric == metric).any():
                part = _table1_rows(rows, statistics, n_boot, metric)
                parts.append(part.assign(headline=False, in_claims=False,
                                         signal_note=f"{metric}, beside the headline metric, which the claims use"))
    table = pd.concat(parts, ignore_index=True)
    order = {m: i for i, m in enumerate(dict.fromkeys(table.model))}
    table["_order"] = table.model.map(order)
    return table.sort_values(["_order", "task", "headline"], ascending=[True, True, False], kind="stable").drop(
        columns="_order").reset_index(drop=True)


def _table1_rows(results: pd.DataFrame, statistics, n_boot: int, metric: str | None) -> pd.DataFrame:
    s = seed_summary(results, metric=metric)
    base = _by_point(s, lambda t: t.replaced_heads == 0)
    papa = _by_point(s, lambda t: t.replaced_heads == t.total_heads)
    table = pd.DataFrame({"metric": base["metric"], "baseline": base["mean"], "baseline_std": base["std"],
                          "papa": papa["mean"], "papa_std": papa["std"], "seeds": base["count"],
                          "baseline_degenerate": base["degenerate"], "papa_degenerate": papa["degenerate"]}).dropna(
        subset=["baseline", "papa"])
    trivial = _by_point(seed_summary(results, "trivial", metric), lambda t: t.replaced_heads == 0)
    free = _by_point(seed_summary(results, "attention_free", metric), lambda t: t.replaced_heads == 0)
    table["trivial"] = trivial["mean"].reindex(table.index)
    table["attention_free"] = free["mean"].reindex(table.index)
    table["attention_free_std"] = free["std"].reindex(table.index)
    table["attention_free_degenerate"] = free["degenerate"].reindex(table.index).fillna(0).astype(int)
    table["relative_drop"] = relative_drop(table["baseline"], table["papa"])
    table["learned_lost"] = share_lost(table["baseline"], table["papa"], table["trivial"])
    draws = point_draws(results, statistics, "all", n=n_boot, metric=metric)
    for name, measure in (("relative_drop", relative_of), ("learned_lost", learned_lost_of)):
        bounds = {point: interval(measure(*d["draws"])) if d["noise"] else (np.nan, np.nan)
                  for point, d in draws.items()}
        table[f"{name}_low"] = [bounds.get(i, (np.nan, np.nan))[0] for i in table.index]
        table[f"{name}_high"] = [bounds.get(i, (np.nan, np.nan))[1] for i in table.index]
    table["dev_resampled"] = [bool(draws[i]["dev_resampled"]) if i in draws else False for i in table.index]
    notes = signal_notes(draws, table["baseline_degenerate"].to_dict())
    table["signal_note"] = [notes.get(i, "no references on the same dev data") for i in table.index]
    table["in_claims"] = table["signal_note"] == ""
    # one rule for both: a cell has contextual signal to lose exactly when it is in the claims (its baseline clears
    # the attention-free probe, and the trivial predictor, by more than its noise); a one-class reference is a floor
    one_class = table["attention_free_degenerate"] > 0
    table["contextual_lost"] = np.where(table["in_claims"] & ~one_class, share_lost(
        table["baseline"], table["papa"], table["attention_free"]), np.nan)
    table["contextual_note"] = np.where(table["attention_free"].isna(), "no reference",
                                        np.where(one_class, "attention-free probe predicts one class",
                                                 np.where(table["in_claims"], "", "left out of the claims")))
    protocol = _protocols(results)
    for column in PROTOCOL_FIELDS:
        table[column] = [protocol.get(i, {}).get(column) for i in table.index]
    return table.reset_index()


PROTOCOL_FIELDS = ("train_examples", "dev_examples", "L")


def _protocols(results: pd.DataFrame) -> dict:
    """(model, task) -> {train_examples, dev_examples, L} of its probe results (where the results say)."""
    if not set(PROTOCOL_FIELDS) <= set(results.columns):
        return {}
    rows = results[predictor_column(results) == "probe"]
    return {cell: {c: int(part[c].iloc[0]) for c in PROTOCOL_FIELDS}
            for cell, part in rows.groupby(["model", "task"], sort=False)}


def protocol_per_task(results: pd.DataFrame) -> dict:
    """Per task, the protocol every model got ({train_examples, dev_examples, L}), or, where the models got
    different ones, {"differs": {model: protocol}}: then the models of that task are not compared (claim 3)."""
    out = {}
    for (model, task), protocol in _protocols(results).items():
        out.setdefault(task, {})[model] = protocol
    return {task: (next(iter(models.values())) if len({tuple(p.values()) for p in models.values()}) == 1
                   else {"differs": models}) for task, models in out.items()}


def signal_notes(points: dict, degenerate: dict | None = None, level: float = 0.95) -> dict:
    """Which cells can show what PAPA costs. (model, task) -> "" where the baseline clears both references (the
    trivial predictor and the attention-free probe, ``point_draws``) by more than its own noise: the lower end of
    the 95% bootstrap interval of baseline - max(references) is above 0, the replicates resampling seeds and
    dev examples, paired. Elsewhere the reason it does not. A cell that fails is left out of every claim average,
    in the estimate and in every replicate alike (``check_claims``)."""
    out = {}
    for cell, p in points.items():
        base, _, trivial = p["estimates"][:3]
        references = [(name, value, draws) for name, value, draws in
                      (("trivial predictor", trivial, p["draws"][2]),
                       ("attention-free probe", p["free_estimate"], p["free_draws"])) if not np.isnan(value)]
        if not references:
            out[cell] = "no references on the same dev data"
            continue
        name, value, _ = max(references, key=lambda r: r[1])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            margin = p["draws"][0] - np.nanmax(np.stack([r[2] for r in references]), axis=0)
            low = float(np.nanquantile(margin, (1 - level) / 2)) if np.isfinite(margin).any() else np.nan
        one_class = f"; the baseline probe predicts one class on {int(degenerate[cell])} seeds" if (
            degenerate and degenerate.get(cell)) else ""
        if base - value > 0 and low > 0:
            out[cell] = ""
        else:
            out[cell] = (f"baseline {base:.1f} does not clear the {name} ({value:.1f}) by more than its noise "
                         f"(95% lower bound of the margin {low:+.1f}){one_class}")
    return out


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
    """How a result's per-example dev statistics are filed (``tables.write_results``'s dev_statistics.npz)."""
    return f"{model}|{task}|{predictor}|{int(replaced_heads)}|{seed}"


def replaced_count(total_heads: int, replaced) -> int:
    """How many heads a configuration replaces: "all", "half" (round(total / 2)) or a share of the heads such as
    7/8 (rounded as ``choices.replaced_counts`` rounds the sweep's shares)."""
    if replaced == "all":
        return int(total_heads)
    share = 0.5 if replaced == "half" else float(replaced)
    return int(round(share * total_heads))


def point_draws(results: pd.DataFrame, statistics: dict | None = None, replaced="all", n: int = 2000,
                seed: int = 0, metric: str | None = None, pairing: str | None = None) -> dict:
    """Per model x task, the baseline, the configuration `replaced` ("all" or "half" of the heads, or a share such
    as 7/8, ``replaced_count``) and the trivial predictor: {"estimates": their means over seeds on the whole dev set
    (3 values), "draws": [3, n] bootstrap replicates, "free_estimate" / "free_draws": the attention-free probe's
    (NaN without it), "dev_resampled"}. The headline metric, or `metric` (its per-example counts derived from the
    headline's, ``derived_statistics``).

    A replicate resamples the seeds (with replacement) and, where `statistics` (``statistics_key`` -> per-example
    counts, ``metrics.example_statistics``) hold every value of the point, the dev examples too, with Poisson(1)
    weights per example (the Poisson bootstrap). It is paired: one replicate applies the same seed indices and
    the same dev weights to the baseline, the configuration, the attention-free probe and the floor, so what
    they share cancels. Two calls with the same `pairing` name (default: `replaced`) pick the same seeds in each
    replicate, so their configurations are paired with each other too where their `seeds` are the same. `noise`
    is False where nothing is resampled (one seed, no per-example statistics): the replicates are all the same,
    and an interval from them alone would have no width."""
    from ..core.metrics import metric_from_statistics

    rows = headline(results, None, metric)
    heads_of = results[results["headline"]].groupby("task")["metric"].first().to_dict()
    predictor = predictor_column(rows)
    out = {}
    for (model, task), part in rows.groupby(["model", "task"], sort=True):
        # every point draws from generators named by what it is, so its replicates do not depend on which other
        # points are there; the dev weights are named by the task and dev size only: models scored on the same dev
        # examples share them, and the dev noise they share stays in the averages' CIs
        rng = np.random.default_rng([seed, zlib.crc32(f"{model}|{task}|{pairing or replaced}".encode())])
        p = predictor.loc[part.index]
        k = replaced_count(part.total_heads.iloc[0], replaced)
        pick = lambda who, heads: part[(p == who) & (part.replaced_heads == heads)].set_index("seed")["value"]  # noqa
        base, other, trivial, free = pick("probe", 0), pick("probe", k), pick("trivial", 0), pick("attention_free", 0)
        seeds = sorted(set(base.index) & set(other.index))
        if not seeds:
            continue
        name = part.metric.iloc[0]
        with_free = set(seeds) <= set(free.index)
        floor = float(trivial.iloc[0]) if len(trivial) else np.nan
        groups = [("probe", 0), ("probe", k)] + ([("attention_free", 0)] if with_free else [])
        keys = [[statistics_key(model, task, who, heads, s) for s in seeds] for who, heads in groups]
        floor_key = statistics_key(model, task, "trivial", 0, trivial.index[0]) if len(trivial) else None
        found = lambda key: derived_statistics(name, heads_of.get(task, name), (statistics or {}).get(key))  # noqa
        resampled = statistics is not None and found(floor_key) is not None and all(
            found(key) is not None for group in keys for key in group)
        if resampled:
            weights = dev_weights(seed, task, len(found(floor_key)), n)
            replicate = lambda key: metric_from_statistics(name, weights @ found(key).astype(np.float32))  # noqa
            values = [np.stack([replicate(key) for key in group], axis=1) for group in keys]  # [n, seeds] each
            floor_draws = replicate(floor_key)
        else:
            values = [np.tile(v.loc[seeds].to_numpy(float), (n, 1))
                      for v in (base, other, free)[:len(groups)]]
            floor_draws = np.full(n, floor)
        chosen = rng.integers(0, len(seeds), (n, len(seeds)))
        draws = [np.take_along_axis(v, chosen, axis=1).mean(1) for v in values]
        out[model, task] = {"estimates": np.array([base.loc[seeds].mean(), other.loc[seeds].mean(), floor]),
                            "draws": np.stack(draws[:2] + [floor_draws]), "dev_resampled": resampled,
                            "seeds": tuple(seeds), "noise": resampled or len(seeds) > 1,
                            "free_estimate": float(free.loc[seeds].mean()) if with_free else np.nan,
                            "free_draws": draws[2] if with_free else np.full(n, np.nan)}
    return out


@functools.lru_cache(maxsize=8)
def dev_weights(seed: int, task: str, n_dev: int, n: int) -> np.ndarray:
    """The Poisson(1) weights of `n` bootstrap replicates over a task's `n_dev` dev examples, [n, n_dev], named by
    the seed, the task and the dev size only (``point_draws``): every model, configuration and call on the same dev
    examples draws the same ones, so they are made once (read-only). The last 8 are kept: at 2,000 draws over
    MNLI's 9,815 dev examples one takes 79 MB."""
    dev_rng = np.random.default_rng([seed, zlib.crc32(task.encode()), n_dev])
    weights = dev_rng.poisson(1.0, (n, n_dev)).astype(np.float32)
    weights.flags.writeable = False
    return weights


def derived_statistics(metric: str, headline_metric: str, statistics):
    """Per-example counts of `metric` from those of the task's headline metric (``metrics.example_statistics``):
    the same where they are the same metric; accuracy from F1's [tp, fp, fn] (correct = 1 - fp - fn);
    None where they cannot be derived or are missing."""
    if statistics is None:
        return None
    if metric == headline_metric:
        return statistics
    if metric == "accuracy" and headline_metric == "f1":
        correct = 1 - statistics[:, 1] - statistics[:, 2]
        return np.stack([correct, np.ones_like(correct)], axis=1)
    return None


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
    counted; `dev_resampled_points` says at how many the dev examples were resampled. Over one point the interval
    is that point's own (its replicates resample seeds and dev examples only), undefined where it has no noise."""
    estimates = np.array([float(measure(*p["estimates"])) for p in points.values()], dtype=float)
    defined = ~np.isnan(estimates)
    kept = [p for p, ok in zip(points.values(), defined) if ok]
    out = {"value": float(estimates[defined].mean()) if defined.any() else float("nan"),
           "points": int(defined.sum()), "undefined_points": int((~defined).sum()),
           "dev_resampled_points": sum(p["dev_resampled"] for p in kept), "ci_low": float("nan"),
           "ci_high": float("nan")}
    if len(kept) == 1:  # one cell: no cells to resample, its own replicates (seeds, dev examples) give the interval
        if kept[0].get("noise", True):
            out["ci_low"], out["ci_high"] = interval(measure(*kept[0]["draws"]), level)
        return out
    if not kept:
        return out
    replicates = np.stack([measure(*p["draws"]) for p in kept], axis=1)  # [n, points]
    chosen = np.random.default_rng(seed).integers(0, len(kept), replicates.shape)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate where every picked point is undefined
        averages = np.nanmean(np.take_along_axis(replicates, chosen, axis=1), axis=1)
    out["ci_low"], out["ci_high"] = interval(averages, level)
    return out


def relative_of(base, papa, floor):
    return relative_drop(base, papa)


def learned_lost_of(base, papa, floor):
    return share_lost(base, papa, floor)


def curve_summary(curve: pd.DataFrame) -> pd.DataFrame:
    """Learning curve (``tables.curve_table``) per model x task x training size: mean over seeds of the
    baseline, PAPA, attention-free probe and trivial predictor, the paper's relative drop and the share of the
    learned signal lost."""
    means = curve.pivot_table(index=["model", "task", "metric", "train_examples"], columns="configuration",
                              values="value", aggfunc="mean").reset_index()
    means.columns.name = None
    means["relative_drop"] = relative_drop(means["baseline"], means["PAPA"])
    means["learned_lost"] = share_lost(means["baseline"], means["PAPA"], means["trivial"])
    means["contextual_lost"] = share_lost(means["baseline"], means["PAPA"], means["attention_free"])
    return means


def curve_seed_drops(curve: pd.DataFrame) -> pd.DataFrame:
    """Each seed's relative drop on a learning curve (``tables.curve_table``), its baseline and PAPA paired by
    seed: model, task, train_examples, seed, relative_drop (seeds without both probes left out)."""
    probes = curve[curve.configuration.isin(["baseline", "PAPA"])]
    seeds = probes.pivot_table(index=["model", "task", "train_examples", "seed"], columns="configuration",
                               values="value").reset_index()
    seeds = seeds.dropna(subset=[c for c in ("baseline", "PAPA") if c in seeds] or ["seed"])
    seeds["relative_drop"] = relative_drop(seeds["baseline"], seeds["PAPA"]) if len(seeds) else []
    return seeds[["model", "task", "train_examples", "seed", "relative_drop"]]


def bootstrap_correlation(x, y, n: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Pearson and Spearman correlation of x and y with percentile bootstrap CIs over the (x, y) pairs
    (``scipy.stats.bootstrap``, paired); a resample whose x or y is constant has no correlation and is dropped."""
    from scipy.stats import bootstrap, pearsonr, spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out = {"points": len(x)}
    for name, fn in (("pearson", pearsonr), ("spearman", spearmanr)):
        def statistic(a, b):
            return float(fn(a, b)[0]) if np.std(a) > 0 and np.std(b) > 0 else np.nan

        value, low, high = np.nan, np.nan, np.nan
        if len(x) > 2 and np.std(x) > 0 and np.std(y) > 0:
            value = statistic(x, y)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # resamples without a correlation, degenerate distributions
                ci = bootstrap((x, y), statistic, paired=True, vectorized=False, n_resamples=n, confidence_level=level,
                               method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
            low, high = float(ci.low), float(ci.high)
        out[name] = {"value": value, "ci_low": low, "ci_high": high}
    return out


def undefined(value) -> bool:
    """Undefined: None (strict JSON's null) or NaN."""
    return value is None or bool(np.isnan(value))


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
    """Each ranking against the gates over the partial points where the rankings are compared (model x task x k,
    ``Profile.compare_counts``): the mean
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


STATISTICS_FILE = "dev_statistics.npz"


def read_statistics(folder: Path) -> dict:
    """The per-example dev statistics saved beside a results table (``tables.write_results``); {} when there are none
    (results made before they were kept: bootstraps then resample seeds only)."""
    path = Path(folder) / STATISTICS_FILE
    if not path.exists():
        return {}
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def ranking_agreement(a, b) -> dict:
    """How two rankings of the same heads agree: Spearman correlation of the heads' positions, and the share of
    heads that the first halves of both rankings have in common."""
    a, b = [tuple(map(int, h)) for h in a], [tuple(map(int, h)) for h in b]
    if sorted(a) != sorted(b):
        raise ValueError("the two rankings do not list the same heads")
    position = {h: i for i, h in enumerate(b)}
    x = np.arange(len(a), dtype=float)
    y = np.array([position[h] for h in a], dtype=float)
    half = len(a) // 2
    return {"spearman": float(np.corrcoef(x, y)[0, 1]) if len(a) > 1 else 1.0,
            "first_half_overlap": len(set(a[:half]) & set(b[:half])) / half if half else 1.0}


def epoch_rates(epochs: int, schedule: str = "constant") -> np.ndarray:
    """The mean learning rate of each epoch as a share of the peak: 1 under a constant rate; under the linear
    schedule (from the peak down to 0 at the last step), 1 - (e - 1/2) / epochs for epoch e."""
    e = np.arange(1, epochs + 1)
    return np.ones(epochs) if schedule == "constant" else 1 - (e - 0.5) / epochs


def tail_slope(values: np.ndarray, epochs: list[int], total_epochs: int, schedule: str) -> np.ndarray:
    """Least-squares slope of each row of `values` (the metric at `epochs`, 1-based) against the training done by
    the end of each epoch, in epochs at the peak rate (``epoch_rates``); NaN with fewer than two epochs."""
    if len(epochs) < 2:
        return np.full(len(values), np.nan)
    done = np.cumsum(epoch_rates(total_epochs, schedule))[np.asarray(epochs) - 1]
    x = done - done.mean()
    return (values - values.mean(1, keepdims=True)) @ x / (x ** 2).sum()
