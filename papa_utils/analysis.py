"""From tidy probe results to the paper's numbers: Table 1, relative drops, correlation with strength."""
from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd


# Thresholds of the verdicts (project decisions, stated with every verdict)
PAPER_ALL_HEADS_DROP = 0.08  # claim 1: the paper's average relative drop with every head constant
LITTLE_DROP = 0.05  # claim 2, "little or no drop" with half of the heads constant: a relative drop below 5%
WIDE_INTERVAL = 0.15  # an interval wider than 15 points of relative drop cannot say that a drop is about 8%
DEGENERATE_SHARE = 0.99  # a probe that puts at least 99% of its dev predictions in one class predicts one class
# reported in Table 1 beside the headline metric, not used by the claims (which keep the paper's metric)
SECONDARY_METRICS = {"mrpc": ("accuracy",)}


def headline(results: pd.DataFrame, predictor: str | None = "probe", metric: str | None = None) -> pd.DataFrame:
    """Only each task's headline metric (CoLA MCC, MRPC F1, accuracy, NER entity F1, ...), or only `metric`, of
    one predictor ("probe", the paper's; "attention_free"; "trivial"), or of all with predictor=None."""
    rows = results[results["headline"]] if metric is None else results[results["metric"] == metric]
    if predictor is not None:
        rows = rows[_predictor(rows) == predictor]
    return rows.copy()


def _predictor(results: pd.DataFrame) -> pd.Series:
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
      only where baseline - attention-free exceeds the seed spread (the larger of the two min..max ranges over
      seeds) and the attention-free probe does not predict one class; elsewhere NaN, `contextual_note` says why.
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
    spread = np.maximum(base["max"] - base["min"], (free["max"] - free["min"]).reindex(base.index)).reindex(table.index)
    contextual = (table["baseline"] - table["attention_free"]) > spread
    one_class = table["attention_free_degenerate"] > 0
    table["contextual_lost"] = np.where(contextual & ~one_class, share_lost(table["baseline"], table["papa"],
                                                                            table["attention_free"]), np.nan)
    table["contextual_note"] = np.where(table["attention_free"].isna(), "no reference",
                                        np.where(one_class, "attention-free probe predicts one class",
                                                 np.where(contextual, "", "no contextual signal to lose")))
    draws = point_draws(results, statistics, "all", n=n_boot, metric=metric)
    for name, measure in (("relative_drop", _relative), ("learned_lost", _learned)):
        bounds = {point: interval(measure(*d["draws"])) for point, d in draws.items()}
        table[f"{name}_low"] = [bounds.get(i, (np.nan, np.nan))[0] for i in table.index]
        table[f"{name}_high"] = [bounds.get(i, (np.nan, np.nan))[1] for i in table.index]
    table["dev_resampled"] = [bool(draws[i]["dev_resampled"]) if i in draws else False for i in table.index]
    notes = signal_notes(draws, table["baseline_degenerate"].to_dict())
    table["signal_note"] = [notes.get(i, "no references on the same dev data") for i in table.index]
    table["in_claims"] = table["signal_note"] == ""
    protocol = _protocols(results)
    for column in PROTOCOL_FIELDS:
        table[column] = [protocol.get(i, {}).get(column) for i in table.index]
    return table.reset_index()


PROTOCOL_FIELDS = ("train_examples", "dev_examples", "L")


def _protocols(results: pd.DataFrame) -> dict:
    """(model, task) -> {train_examples, dev_examples, L} of its probe results (where the results say)."""
    if not set(PROTOCOL_FIELDS) <= set(results.columns):
        return {}
    rows = results[_predictor(results) == "probe"]
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


def point_draws(results: pd.DataFrame, statistics: dict | None = None, replaced: str = "all", n: int = 2000,
                seed: int = 0, metric: str | None = None) -> dict:
    """Per model x task, the baseline, the configuration `replaced` ("all" or "half" of the heads) and the trivial
    predictor: {"estimates": their means over seeds on the whole dev set (3 values), "draws": [3, n] bootstrap
    replicates, "free_estimate" / "free_draws": the attention-free probe's (NaN without it), "dev_resampled"}.
    The headline metric, or `metric` (its per-example counts derived from the headline's, ``derived_statistics``).

    A replicate resamples the seeds (with replacement) and, where `statistics` (``statistics_key`` -> per-example
    counts, ``metrics.example_statistics``) hold every value of the point, the dev examples too, with Poisson(1)
    weights per example (the Poisson bootstrap). It is paired: one replicate applies the same seed indices and
    the same dev weights to the baseline, the configuration, the attention-free probe and the floor, so what
    they share cancels."""
    from .metrics import metric_from_statistics

    rows = headline(results, None, metric)
    heads_of = results[results["headline"]].groupby("task")["metric"].first().to_dict()
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
            n_dev = len(found(floor_key))
            dev_rng = np.random.default_rng([seed, zlib.crc32(task.encode()), n_dev])
            weights = dev_rng.poisson(1.0, (n, n_dev)).astype(np.float32)
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
                            "free_estimate": float(free.loc[seeds].mean()) if with_free else np.nan,
                            "free_draws": draws[2] if with_free else np.full(n, np.nan)}
    return out


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


def curve_markdown(summary: pd.DataFrame) -> str:
    """The learning curve (``curve_summary``) as a Markdown table, one row per task x training size."""
    lines = ["| model | task | metric | training examples | trivial | attention-free | baseline | PAPA | relative drop "
             "| learned signal lost |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary.sort_values(["task", "train_examples"]).itertuples():
        lines.append(f"| {r.model} | {r.task} | {r.metric} | {r.train_examples} | {r.trivial:.1f} | "
                     f"{r.attention_free:.1f} | {r.baseline:.1f} | {r.PAPA:.1f} | {_pct(r.relative_drop)} | "
                     f"{_pct(r.learned_lost)} |")
    return "\n".join(lines) + "\n"


def curve_drops_markdown(summary: pd.DataFrame, left_out: dict | None = None) -> str:
    """The learning curve (``curve_summary``) in short: per model x task, PAPA's relative drop at each training
    size with the baseline beside it. A drop is read only where the cell carries signal in the run's claims (not
    in `left_out`, claims.json's cells whose baseline does not clear its references by more than its noise at the
    full training size, on the same dev set) and, at this size, the baseline beats both the trivial predictor and
    the attention-free probe; elsewhere "—" and the reason in a footnote mark."""
    left_out = left_out or {}
    sizes = sorted(summary.train_examples.unique())
    lines = ["| model | task | " + " | ".join(f"{n:,} examples" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for (model, task), part in summary.groupby(["model", "task"], sort=True):
        cells = []
        for n in sizes:
            row = part[part.train_examples == n]
            if not len(row):
                cells.append("")
                continue
            r = row.iloc[0]
            references = [v for v in (r.trivial, r.attention_free) if not np.isnan(v)]
            reference = max(references, default=np.nan)
            if f"{model} {task}" in left_out:
                cells.append(f"— (baseline {r.baseline:.1f})¹")
            elif not references:
                cells.append(f"— (baseline {r.baseline:.1f}, no reference)")
            elif not r.baseline > reference:
                cells.append(f"— (baseline {r.baseline:.1f} ≤ {reference:.1f})²")
            else:
                cells.append(f"{_pct(r.relative_drop)} (baseline {r.baseline:.1f})")
        lines.append(f"| {model} | {task} | " + " | ".join(cells) + " |")
    notes = {"¹": "¹ left out of the claims: at the full training size its baseline does not clear its references "
                  "by more than its noise.",
             "²": "² at this size the baseline does not beat a reference (the trivial predictor or the attention-free "
                  "probe)."}
    used = [note for mark, note in notes.items() if any(line.count(f"){mark}") for line in lines[2:])]
    return "\n".join(lines + ([""] + [" ".join(used)] if used else [])) + "\n"


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


def _pct(value) -> str:
    return "undefined" if value is None or np.isnan(value) else f"{100 * value:.1f}%"


def _pct_ci(value, low, high) -> str:
    """'12.3% [4.5, 20.1]' (the CI left out where undefined)."""
    if value is None or np.isnan(value) or np.isnan(low):
        return _pct(value)
    return f"{100 * value:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _one_class(seeds) -> str:
    return f" (one class on {int(seeds)} seed{'s' * (int(seeds) != 1)})" if seeds and seeds > 0 else ""


def protocol_markdown(table: pd.DataFrame) -> str:
    """One line per task: the training and dev examples and L every model got, or each model's where they differ."""
    lines = []
    for task, part in table[table.headline].groupby("task", sort=False):
        said = {f"{int(r.train_examples)} training, {int(r.dev_examples)} dev examples, L {int(r.L)}"
                for r in part.itertuples() if not _missing(r.train_examples)}
        if len(said) == 1:
            lines.append(f"- {task}: {said.pop()}, for every model")
        elif said:
            lines.append(f"- {task}: **the models got different protocols**: " + "; ".join(
                f"{r.model} {int(r.train_examples)} training, {int(r.dev_examples)} dev, L {int(r.L)}"
                for r in part.itertuples()))
    return "\n".join(lines) + ("\n" if lines else "")


def table1_markdown(table: pd.DataFrame) -> str:
    """Table 1 as Markdown: the protocol of each task; baseline and PAPA (mean ± std over seeds), the trivial and
    attention-free references on the same dev data, the paper's relative drop and the share of the learned signal
    lost with their 95% bootstrap CIs, the share of the contextual signal lost, and whether the cell is in the
    claims; the averages are over the cells in the claims, and the cells left out follow with the reason."""
    lines = [protocol_markdown(table).rstrip(), "",
             "| model | task | metric | trivial | attention-free | baseline | PAPA (all heads constant) | relative drop "
             "| learned signal lost | contextual signal lost | in the claims |", "|---" * 11 + "|"]
    for r in table.itertuples():
        contextual = _pct(r.contextual_lost) if r.contextual_note == "" else r.contextual_note
        free = ("–" if np.isnan(r.attention_free) else
                f"{r.attention_free:.1f} ± {r.attention_free_std:.1f}{_one_class(r.attention_free_degenerate)}")
        trivial = "–" if np.isnan(r.trivial) else f"{r.trivial:.1f}"
        claims = "yes" if r.in_claims else "no" if r.headline else "no (secondary metric)"
        lines.append(f"| {r.model} | {r.task} | {r.metric} | {trivial} | {free} | {r.baseline:.1f} ± "
                     f"{r.baseline_std:.1f}{_one_class(r.baseline_degenerate)} | {r.papa:.1f} ± {r.papa_std:.1f}"
                     f"{_one_class(r.papa_degenerate)} | "
                     f"{_pct_ci(r.relative_drop, r.relative_drop_low, r.relative_drop_high)} | "
                     f"{_pct_ci(r.learned_lost, r.learned_lost_low, r.learned_lost_high)} | {contextual} | {claims} |")
    kept = table[table.in_claims]
    lines.append(f"| **average over the cells in the claims** | | | | | | | {_mean_note(kept.relative_drop)} | "
                 f"{_mean_note(kept.learned_lost)} | {_mean_note(kept.contextual_lost)} | {len(kept)} cells |")
    left = table[table.headline & ~table.in_claims]
    if len(left):
        lines += ["", "Left out of the claims (a baseline that does not clear its references by more than its own "
                      "noise has nothing PAPA could be seen to lose):"]
        lines += [f"- {r.model} {r.task}: {r.signal_note}" for r in left.itertuples()]
    return "\n".join(lines) + "\n"


def _mean_note(values: pd.Series) -> str:
    """'**x%** over n' (and how many are undefined)."""
    defined = values.dropna()
    if not len(defined):
        return "undefined"
    undefined = len(values) - len(defined)
    return f"**{_pct(defined.mean())}** over {len(defined)}" + (f" ({undefined} undefined)" if undefined else "")


def table1_latex(table: pd.DataFrame) -> str:
    def pct(value):
        return "--" if _missing(value) else f"{100 * value:.1f}\\%"

    def num(value):
        return "--" if np.isnan(value) else f"{value:.1f}"

    rows = [r"\begin{tabular}{lllrrrrrrrl}", r"\toprule",
            r"model & task & metric & trivial & attn.-free & baseline & PAPA & rel.\ drop & learned lost & "
            r"context lost & in claims \\", r"\midrule"]
    for r in table.itertuples():
        rows.append(f"{r.model} & {r.task} & {r.metric.replace('_', ' ')} & {num(r.trivial)} & "
                    f"{num(r.attention_free)} & {r.baseline:.1f} & {r.papa:.1f} & "
                    f"{_pct_ci(r.relative_drop, r.relative_drop_low, r.relative_drop_high).replace('%', chr(92) + '%')} & "
                    f"{_pct_ci(r.learned_lost, r.learned_lost_low, r.learned_lost_high).replace('%', chr(92) + '%')} & "
                    f"{pct(r.contextual_lost)} & {'yes' if r.in_claims else 'no'} \\\\")
    kept = table[table.in_claims]
    mean = lambda v: v.dropna().mean() if v.notna().any() else np.nan  # noqa: E731
    rows += [r"\midrule", f"average (cells in the claims) & & & & & & & {pct(mean(kept.relative_drop))} & "
             f"{pct(mean(kept.learned_lost))} & {pct(mean(kept.contextual_lost))} & {len(kept)} \\\\",
             r"\bottomrule", r"\end{tabular}"]
    return "\n".join(rows) + "\n"


def within_task_test(t1: pd.DataFrame, points: dict, protocols: dict, alpha: float = 0.05) -> dict:
    """Claim 3 read within each task, on the cells that carry signal (``in_claims``) of models scored on one dev
    set with one protocol: per task the Spearman correlation of baseline and relative drop across its models;
    their mean over tasks; its exact one-sided p-values under the null that the drops are unrelated to the
    baselines (every assignment of one task's drops to its models equally likely, tasks independent); the
    smallest mean this design could call significant at `alpha` (its power: with three models a task's Spearman
    is one of -1, -0.5, 0.5, 1); and a bootstrap CI of the mean over the cells' paired replicates (``point_draws``:
    models on one dev set share its dev weights)."""
    import itertools

    from scipy.stats import spearmanr

    tasks, nulls, replicate = {}, [], []
    rows = t1[t1.in_claims]
    for task in dict.fromkeys(t1.task):
        part = rows[rows.task == task]
        entry = {"models": len(part), "spearman": None}
        if "differs" in protocols.get(task, {}):
            entry["left_out"] = "the models got different training or dev examples or L"
        elif len(part) < 2:
            entry["left_out"] = "fewer than two models carry signal"
        elif part.baseline.nunique() < 2 or part.relative_drop.nunique() < 2:
            entry["left_out"] = "ties throughout"
        else:
            b, d = part.baseline.to_numpy(float), part.relative_drop.to_numpy(float)
            entry["spearman"] = float(spearmanr(b, d)[0])
            nulls.append(sorted(float(spearmanr(b, d[list(order)])[0])
                                for order in itertools.permutations(range(len(d)))))
            cells = [points[(m, task)] for m in part.model]
            base = np.stack([c["draws"][0] for c in cells], axis=1)
            drop = relative_drop(base, np.stack([c["draws"][1] for c in cells], axis=1))
            replicate.append(_rank_correlation(base, drop))
        tasks[task] = entry
    measured = [t["spearman"] for t in tasks.values() if t["spearman"] is not None]
    out = {"tasks": tasks, "tasks_measured": len(measured), "tasks_where_it_holds": sum(v > 0 for v in measured),
           "mean_spearman": float(np.mean(measured)) if measured else None, "p_greater": None, "p_less": None,
           "detectable_mean_spearman": None, "ci_low": None, "ci_high": None, "alpha": alpha}
    if not measured:
        return out
    means = np.array([np.mean(c) for c in itertools.product(*nulls)])  # the exact null distribution of the mean
    observed = out["mean_spearman"]
    out["p_greater"] = float(np.mean(means >= observed - 1e-12))
    out["p_less"] = float(np.mean(means <= observed + 1e-12))
    detectable = [v for v in np.unique(means) if np.mean(means >= v - 1e-12) <= alpha]
    out["detectable_mean_spearman"] = float(min(detectable)) if detectable else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["ci_low"], out["ci_high"] = interval(np.nanmean(np.stack(replicate, axis=1), axis=1))
    return out


def _rank_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation along axis 1 of [n, m] arrays, one per row (NaN where a row is constant)."""
    rank = lambda v: np.argsort(np.argsort(v, axis=1), axis=1).astype(float)  # noqa: E731
    rx, ry = rank(x), rank(y)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))


def average_verdict(average: dict, claim: str) -> dict:
    """{"verdict": "holds" | "fails" | "undecided", "reason"} of claim 1 ("all": about the paper's 8% or less) or
    claim 2 ("half": little or no drop, below ``LITTLE_DROP``) from an average relative drop and its 95% CI
    (``bootstrap_average``)."""
    low, high = average.get("ci_low"), average.get("ci_high")
    if not average.get("points"):
        return {"verdict": "undecided", "reason": "no cell carries signal"}
    if _missing(low):
        return {"verdict": "undecided", "reason": f"no interval over {average['points']} cell(s) carrying signal"}
    span = f"95% interval [{100 * low:.1f}, {100 * high:.1f}]"
    if claim == "all":
        if low > PAPER_ALL_HEADS_DROP:
            return {"verdict": "fails",
                    "reason": f"the {span} lies above the paper's {100 * PAPER_ALL_HEADS_DROP:.0f}%"}
        if high - low > WIDE_INTERVAL:
            return {"verdict": "undecided", "reason": f"the {span} is wider than {100 * WIDE_INTERVAL:.0f} points"}
        return {"verdict": "holds", "reason": f"the {span} reaches down to the paper's "
                                              f"{100 * PAPER_ALL_HEADS_DROP:.0f}% or below it"}
    if high < LITTLE_DROP:
        return {"verdict": "holds", "reason": f"the {span} lies below a {100 * LITTLE_DROP:.0f}% drop"}
    if low > LITTLE_DROP:
        return {"verdict": "fails", "reason": f"the {span} lies above a {100 * LITTLE_DROP:.0f}% drop"}
    return {"verdict": "undecided", "reason": f"the {span} straddles a {100 * LITTLE_DROP:.0f}% drop"}


def strength_verdict(test: dict) -> dict:
    """Claim 3's verdict from ``within_task_test``: holds when the mean within-task Spearman is significantly
    positive, fails when significantly negative, else undecided with what this design could detect."""
    if not test["tasks_measured"]:
        return {"verdict": "undecided", "reason": "no task has two or more models that carry signal"}
    said = (f"mean within-task Spearman {test['mean_spearman']:+.2f} over {test['tasks_measured']} tasks, exact "
            f"one-sided p = {test['p_greater']:.3f}")
    if test["p_greater"] < test["alpha"]:
        return {"verdict": "holds", "reason": said}
    if test["p_less"] < test["alpha"]:
        return {"verdict": "fails", "reason": said.replace(f"p = {test['p_greater']:.3f}",
                                                           f"p = {test['p_less']:.3f} for a negative relation")}
    power = (f"no result of this design could reach p < {test['alpha']:g}" if test["detectable_mean_spearman"] is None
             else f"this design detects only a mean of {test['detectable_mean_spearman']:+.2f} or more")
    return {"verdict": "undecided", "reason": f"{said}; {power}"}


def check_claims(results: pd.DataFrame, statistics: dict | None = None, n_boot: int = 2000) -> dict:
    """The paper's three claims, measured on these results, each with a verdict (``average_verdict``,
    ``strength_verdict``).

    Claims 1 and 2 (all / half of the heads constant): the paper's average relative drop and the average share
    of the learned signal lost (against the trivial predictor), pooled and per model, over the cells that carry
    signal (``signal_notes``; the others are listed in `left_out` with the reason), each with a bootstrap CI over
    cells, seeds and, with per-example `statistics`, dev examples (``point_draws``, ``bootstrap_average``).
    Claim 3 is tested within tasks (``within_task_test``); the correlation pooled over every cell, which mixes
    metrics and dev sets, is kept beside it."""
    t1 = table1(results, statistics, n_boot)
    main = t1[t1.headline]
    kept = cells_in_claims(t1)
    protocols = protocol_per_task(results)
    out = {"paper_all_heads_average_relative_drop": PAPER_ALL_HEADS_DROP,
           "thresholds": {"little_drop": LITTLE_DROP, "wide_interval": WIDE_INTERVAL,
                          "degenerate_share": DEGENERATE_SHARE},
           "protocol_per_task": protocols,
           "cells_in_claims": [f"{m} {t}" for m, t in sorted(kept)],
           "left_out": {f"{r.model} {r.task}": r.signal_note for r in main.itertuples() if not r.in_claims},
           "points_with_undefined_drop": [f"{r.model} {r.task}" for r in main[main.relative_drop.isna()].itertuples()]}
    models = list(dict.fromkeys(main.model))
    for name, replaced in (("all_heads", "all"), ("half_heads", "half")):
        out[name] = average_claim(results, statistics, replaced, kept, models, n_boot)
    out["all_heads"]["contextual_signal_lost"] = {
        "value": float(main.contextual_lost.mean()) if main.contextual_lost.notna().any() else None,
        "points": int(main.contextual_lost.notna().sum()),
        "no_contextual_signal": [f"{r.model} {r.task}" for r in main.itertuples() if r.contextual_note]}
    within = within_task_test(main, point_draws(results, statistics, "all", n=n_boot), protocols)
    within["verdict"] = strength_verdict(within)
    within["holds"] = {"holds": True, "fails": False}.get(within["verdict"]["verdict"])
    defined = main[main.in_claims].dropna(subset=["relative_drop"])
    out.update(strength_within_tasks=within, stronger_models_lose_more=within["holds"],
               pooled_strength_correlation=bootstrap_correlation(defined["baseline"], defined["relative_drop"],
                                                                 n=n_boot))
    return out


def cells_in_claims(t1: pd.DataFrame) -> set:
    """The (model, task) cells of Table 1 (``table1``) that the claims average: those whose baseline carries signal."""
    return {(r.model, r.task) for r in t1[t1.headline].itertuples() if r.in_claims}


def average_claim(results: pd.DataFrame, statistics: dict | None, replaced: str, kept: set, models: list,
                  n_boot: int = 2000) -> dict:
    """Claim 1 (`replaced` "all") or claim 2 ("half") over the cells in `kept` (those that carry signal): the
    average relative drop and share of the learned signal lost, pooled and per model, each with its bootstrap CI
    (``point_draws``, ``bootstrap_average``) and verdict (``average_verdict``); for claim 2 also how many cells gain."""
    points = {cell: p for cell, p in point_draws(results, statistics, replaced, n=n_boot).items() if cell in kept}
    block = {"relative_drop": bootstrap_average(points, _relative),
             "learned_signal_lost": bootstrap_average(points, _learned), "per_model": {}}
    block["verdict"] = average_verdict(block["relative_drop"], replaced)
    for model in models:
        mine = {cell: p for cell, p in points.items() if cell[0] == model}
        average = bootstrap_average(mine, _relative)
        block["per_model"][model] = {"relative_drop": average, "learned_signal_lost": bootstrap_average(mine, _learned),
                                     "verdict": average_verdict(average, replaced)}
    if replaced == "half":  # on the same seeds as the drop beside it
        block["gains"] = int(sum(_relative(*p["estimates"]) < 0 for p in points.values()))
    return block


def half_heads_by_ranking(runs: dict, kept: set, models: list, n_boot: int = 2000, main: str = "") -> pd.DataFrame:
    """Claim 2 measured once per ranking: `runs` maps a ranking to (results, statistics), the run's results with
    that ranking's half of the heads at k = ½ (the baseline, all heads and the references are the same rows for
    every ranking) and their per-example dev statistics, and the claim averages the same cells (`kept`, those that
    carry signal in the main results) under each; `main` names the run's own ranking (its main sweep). A ranking
    with fewer seeds than the baseline (a random order runs with one) is paired with the baseline on its seeds only
    (``point_draws``): its interval has no seed-to-seed noise then, and the `seeds` column says so. One row per
    ranking x model ("all models" for the pooled average): seeds, cells, relative drop and share of the learned
    signal lost with their 95% CIs, cells that gain (pooled rows), verdict and reason."""
    rows = []
    for ranking, (table, statistics) in runs.items():
        block = average_claim(table, statistics, "half", kept, models, n_boot)
        probes = table[(table.predictor == "probe") & table.headline]
        half = probes[probes.replaced_heads == (probes.total_heads / 2).round()]
        seeds = ", ".join(str(int(s)) for s in sorted(set(half.seed)))
        for model, part in [("all models", block), *block["per_model"].items()]:
            drop, lost = part["relative_drop"], part["learned_signal_lost"]
            rows.append({"ranking": ranking, "main": ranking == main, "model": model, "seeds": seeds,
                         "cells": drop["points"],
                         "relative_drop": drop["value"], "ci_low": drop["ci_low"], "ci_high": drop["ci_high"],
                         "learned_lost": lost["value"], "learned_ci_low": lost["ci_low"],
                         "learned_ci_high": lost["ci_high"], "dev_resampled_cells": drop["dev_resampled_points"],
                         "cells_gaining": block["gains"] if part is block else None,
                         "verdict": part["verdict"]["verdict"], "reason": part["verdict"]["reason"]})
    return pd.DataFrame(rows)


def half_heads_markdown(table: pd.DataFrame) -> str:
    """``half_heads_by_ranking`` as a Markdown table: one row per ranking (with its seeds; the run's own ranking
    marked), the pooled verdict and each model's."""
    if not len(table):
        return "No ranking was compared with the run's own.\n"
    models = [m for m in dict.fromkeys(table.model) if m != "all models"]
    lines = ["| half of the heads chosen by | seeds | all models | " + " | ".join(models) + " |",
             "|---|---|---|" + "---|" * len(models)]
    for ranking, part in table.groupby("ranking", sort=False):
        cells = []
        for model in ["all models", *models]:
            r = part[part.model == model].iloc[0]
            ci = "" if _missing(r.ci_low) else f" [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]"
            value = "undefined" if _missing(r.relative_drop) else f"{100 * r.relative_drop:.1f}%{ci}"
            cells.append(f"{value}, {r.cells} cells, **{r.verdict}**")
        label = ranking.replace("_", " ") + (" (the run's own: claim 2)" if part["main"].iloc[0] else "")
        lines.append(f"| {label} | {part.seeds.iloc[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _missing(value) -> bool:
    """Undefined: None (strict JSON's null) or NaN."""
    return value is None or bool(np.isnan(value))


def _ci(c: dict) -> str:
    if _missing(c["value"]):
        return "undefined"
    return f"{c['value']:+.2f}" + ("" if _missing(c["ci_low"]) else f" [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]")


def _average(a: dict) -> str:
    if not a["points"]:
        return "undefined"
    ci = "" if _missing(a["ci_low"]) else f" [{100 * a['ci_low']:.1f}, {100 * a['ci_high']:.1f}]"
    left = f"; {a['undefined_points']} undefined" if a["undefined_points"] else ""
    return f"{100 * a['value']:.1f}%{ci} over {a['points']} cells{left}"


def claim_statements(claims: dict) -> dict:
    """One sentence per claim, measured, with its verdict, from ``check_claims``'s output: what notebook 4
    prints and what the README's results block shows, so the two cannot disagree."""
    c = claims
    out = {}
    for name in ("all_heads", "half_heads"):
        a = c[name]
        verdict = a.get("verdict", {"verdict": "undecided", "reason": ""})
        per_model = "; ".join(f"{m} {_average(v['relative_drop'])}, {v['verdict']['verdict']}"
                              for m, v in a.get("per_model", {}).items())
        out[name] = (f"**{verdict['verdict']}** ({verdict['reason']}): relative drop {_average(a['relative_drop'])}; "
                     f"share of the learned signal lost {_average(a['learned_signal_lost'])}"
                     + (f"; {a['gains']} cells gain" if "gains" in a else "")
                     + (f". Per model: {per_model}" if per_model else ""))
    w, r = c["strength_within_tasks"], c["pooled_strength_correlation"]
    verdict = w.get("verdict", {"verdict": "undecided", "reason": ""})
    per_task = ", ".join(f"{t} {v['spearman']:+.2f}" for t, v in w["tasks"].items() if v["spearman"] is not None)
    ci = "" if _missing(w.get("ci_low")) else f", bootstrap 95% interval of the mean [{w['ci_low']:+.2f}, {w['ci_high']:+.2f}]"
    out["strength"] = (f"**{verdict['verdict']}** ({verdict['reason']}{ci})"
                       + (f"; Spearman per task: {per_task}" if per_task else "")
                       + (f"; pooled over all {r['points']} cells (mixed metrics and dev sets): Pearson "
                          f"{_ci(r['pearson'])}, Spearman {_ci(r['spearman'])}" if r["points"] > 2 else ""))
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


STATISTICS_FILE = "dev_statistics.npz"


def read_statistics(folder: Path) -> dict:
    """The per-example dev statistics saved beside a results table (``tables.write_results``); {} when there are none
    (results made before they were kept: bootstraps then resample seeds only)."""
    path = Path(folder) / STATISTICS_FILE
    if not path.exists():
        return {}
    with np.load(path) as data:
        return {key: data[key] for key in data.files}
