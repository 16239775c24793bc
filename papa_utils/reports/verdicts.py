"""The paper's three claims read off the results, each by a stated rule: the averages and tests behind them and
the verdicts, written to claims.json. Every sentence about a result is generated from claims.json
(``rendering.claim_statements``, ``rendering.findings``), so that no sentence typed by hand can drift from the numbers.

The rules (project decisions, stated with every verdict):
- Claim 1, "all heads constant: about the paper's 8% or less": holds when the whole 95% interval of the average
  relative drop lies at or below ``ABOUT_PAPER_FACTOR`` times the paper's 8% (12%), fails when it lies wholly above
  8%, and is undecided otherwise. An interval that merely reaches 8% does not make it hold.
- Claim 2, "half of the heads constant: little or no drop": measured on the cells where full PAPA loses measurably
  (the 95% interval of its relative drop lies above 0); elsewhere half of the heads has nothing to lose. It holds
  when the interval of the average drop lies below ``LITTLE_DROP``, fails when it lies above, else undecided; a
  model with no such cell is "uninformative". A "holds" on cells that lose under 5% even with every head constant
  says so in its reason (half of the heads could fail it only by losing more than all of them). Beside it: the
  share of the full-PAPA loss already lost at each partial point of the sweep.
- Claim 3, "better models lose more": the mean over tasks of the within-task Spearman correlation of baseline and
  relative drop, against a null that relabels the models jointly in every task (a model's drops move together).
  With M models there are only M! relabellings, so the smallest p the design can give is stated with the verdict.
- A probe's dev curve "ended flat" when the slope of its last epochs, against the training done counted in epochs
  at the peak learning rate, is under ``FLAT_TAIL`` points per epoch (``statistics.tail_slope``), or within twice
  its standard error over the seeds: under a decaying rate the last epoch's gain is small by construction, and this
  measure undoes that.
"""
from __future__ import annotations

import itertools
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd

from .statistics import (learned_lost_of, undefined, predictor_column, relative_of, bootstrap_average, bootstrap_correlation, interval,
                       point_draws, protocol_per_task, relative_drop, replaced_count, table1)
from ..settings.choices import SWEEP_FRACTIONS

PAPER_ALL_HEADS_DROP = 0.08  # claim 1: the paper's average relative drop with every head constant
ABOUT_PAPER_FACTOR = 1.5  # claim 1 holds when the whole interval is at most 1.5 x the paper's 8%, i.e. 12%
LITTLE_DROP = 0.05  # claim 2, "little or no drop" with half of the heads constant: a relative drop below 5%
ALPHA = 0.05  # claim 3's one-sided level
MAX_EXACT_MODELS = 8  # claim 3's null enumerates every relabelling of up to 8 models (8! = 40,320); samples beyond
NULL_SAMPLES = 20000  # relabellings drawn when there are more models than that


def about_paper_upper() -> float:
    """The upper end that claim 1's interval may reach and still support "about 8% or less" (12%)."""
    return ABOUT_PAPER_FACTOR * PAPER_ALL_HEADS_DROP


def share_label(share) -> str:
    """1/2, 7/8, 15/16, ... of the heads."""
    return str(Fraction(share).limit_denominator(64))


def by_share(sweep: dict) -> list:
    """A sweep's labels ("1/2", "15/16", "7/8": JSON sorts them as text) in the order of their shares."""
    return sorted(sweep, key=Fraction)


FLAT_TAIL = 0.5  # metric points: a dev curve whose tail would still move less than this per epoch at the peak rate


def average_verdict(average: dict, claim: str) -> dict:
    """{"verdict": "holds" | "fails" | "undecided", "reason"} of claim 1 ("all") or claim 2 ("half") from an
    average relative drop and its 95% CI (``bootstrap_average``), by the rules of the module docstring."""
    low, high = average.get("ci_low"), average.get("ci_high")
    if not average.get("points"):
        return {"verdict": "undecided", "reason": "no cell carries signal"}
    if undefined(low):
        return {"verdict": "undecided", "reason": f"no interval over {average['points']} cell(s) carrying signal"}
    span = f"95% interval [{100 * low:.1f}, {100 * high:.1f}]"
    if claim == "all":
        upper, paper = 100 * about_paper_upper(), 100 * PAPER_ALL_HEADS_DROP
        margin = f"{upper:.0f}%, {ABOUT_PAPER_FACTOR:g} times the paper's {paper:.0f}%"
        if high <= about_paper_upper():
            return {"verdict": "holds", "reason": f"the whole {span} lies at or below {margin}"}
        if low > PAPER_ALL_HEADS_DROP:
            return {"verdict": "fails", "reason": f"the whole {span} lies above the paper's {paper:.0f}%"}
        return {"verdict": "undecided", "reason": f"the {span} reaches above {margin}, and not wholly above "
                                                  f"{paper:.0f}%"}
    if high < LITTLE_DROP:
        return {"verdict": "holds", "reason": f"the {span} lies below a {100 * LITTLE_DROP:.0f}% drop"}
    if low > LITTLE_DROP:
        return {"verdict": "fails", "reason": f"the {span} lies above a {100 * LITTLE_DROP:.0f}% drop"}
    return {"verdict": "undecided", "reason": f"the {span} straddles a {100 * LITTLE_DROP:.0f}% drop"}


def cells_in_claims(t1: pd.DataFrame) -> set:
    """The (model, task) cells of Table 1 (``table1``) that the claims average: those whose baseline carries signal."""
    return {(r.model, r.task) for r in t1[t1.headline].itertuples() if r.in_claims}


def cells_where_full_papa_loses(t1: pd.DataFrame) -> set:
    """The cells in the claims where full PAPA loses measurably: the lower end of the 95% interval of its relative
    drop is above 0. Only there can half of the heads show how much of that loss it already costs (claim 2)."""
    return {(r.model, r.task) for r in t1[t1.headline].itertuples()
            if r.in_claims and not undefined(r.relative_drop_low) and r.relative_drop_low > 0}


def uninformative(cells: int) -> dict:
    """Claim 2's verdict where full PAPA loses nothing measurable on any of `cells` cells in the claims (or, with
    none, where no cell carries signal)."""
    if not cells:
        return {"verdict": "undecided", "reason": "no cell carries signal"}
    return {"verdict": "uninformative",
            "reason": f"full PAPA loses nothing measurable on any of its {cells} cell(s) in the claims (no cell's 95% "
                      f"interval of the all-heads drop lies above 0), so half of the heads has nothing to lose: "
                      f"it neither confirms nor refutes the claim"}


def average_claim(results: pd.DataFrame, statistics: dict | None, replaced: str, kept: set, models: list,
                  n_boot: int = 2000) -> dict:
    """Claim 1 (`replaced` "all") or claim 2 ("half") over the cells in `kept`: the average relative drop and share
    of the learned signal lost, pooled and per model, each with its bootstrap CI (``point_draws``,
    ``bootstrap_average``) and verdict (``average_verdict``); for claim 2 also how many cells gain. A model with no
    cell in `kept` gets no average; for claim 2 its verdict is "uninformative" (``uninformative``)."""
    points = {cell: p for cell, p in point_draws(results, statistics, replaced, n=n_boot).items() if cell in kept}
    block = {"relative_drop": bootstrap_average(points, relative_of),
             "learned_signal_lost": bootstrap_average(points, learned_lost_of), "per_model": {}}
    block["verdict"] = average_verdict(block["relative_drop"], replaced)
    for model in models:
        mine = {cell: p for cell, p in points.items() if cell[0] == model}
        average = bootstrap_average(mine, relative_of)
        block["per_model"][model] = {"relative_drop": average, "learned_signal_lost": bootstrap_average(mine, learned_lost_of),
                                     "verdict": average_verdict(average, replaced)}
    if replaced == "half":  # on the same seeds as the drop beside it
        block["gains"] = int(sum(relative_of(*p["estimates"]) < 0 for p in points.values()))
    return block


def bootstrap_share(partial: dict, full: dict, seed: int = 0, level: float = 0.95) -> dict:
    """The share of the full-PAPA loss already lost at a partial point: the average relative drop at the point
    over the average with every head constant, over the cells both hold, with a percentile CI whose replicates
    resample the cells (the same cells for numerator and denominator) and take each cell's paired replicates
    (``point_draws`` with one `pairing` name: the same seeds and dev weights at both points). A cell whose two
    points differ in their seeds or in whether the dev examples are resampled cannot be paired: it is left out and
    counted (`unpaired_points`)."""
    both = [c for c in partial if c in full]
    # paired only where both points have the same seeds and both resample the dev examples or neither does
    cells = [c for c in both if partial[c]["seeds"] == full[c]["seeds"]
             and partial[c]["dev_resampled"] == full[c]["dev_resampled"]]
    out = {"value": None, "points": len(cells), "unpaired_points": len(both) - len(cells), "ci_low": None,
           "ci_high": None}
    if not cells:
        return out
    num = np.array([relative_of(*partial[c]["estimates"]) for c in cells], dtype=float)
    den = np.array([relative_of(*full[c]["estimates"]) for c in cells], dtype=float)
    out["value"] = float(num.mean() / den.mean()) if den.mean() > 0 else None
    draws_num = np.stack([relative_of(*partial[c]["draws"]) for c in cells], axis=1)  # [n, cells]
    draws_den = np.stack([relative_of(*full[c]["draws"]) for c in cells], axis=1)
    if len(cells) == 1 and not partial[cells[0]]["noise"]:  # one cell, nothing resampled: no interval
        return out
    # one cell: its own replicates (seeds, dev examples); more: the cells are resampled too
    chosen = (np.zeros(draws_num.shape, dtype=int) if len(cells) == 1 else
              np.random.default_rng(seed).integers(0, len(cells), draws_num.shape))
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = np.nanmean(np.take_along_axis(draws_num, chosen, axis=1), axis=1)
        b = np.nanmean(np.take_along_axis(draws_den, chosen, axis=1), axis=1)
        ratio = np.where(b > 0, a / b, np.nan)
    low, high = interval(ratio, level)
    out["ci_low"], out["ci_high"] = (None if np.isnan(low) else low), (None if np.isnan(high) else high)
    return out


def sweep_points(results: pd.DataFrame, fractions=SWEEP_FRACTIONS) -> dict:
    """The partial points of the sweep in `results`, each named by the share of the run's sweep (`fractions`:
    the profile's ``sweep_fractions``, by default the paper's, ``choices.SWEEP_FRACTIONS``) that gives it: {share: {model: replaced heads}}. A model whose heads do not divide
    by the share has the rounded count there (``replaced_count``: MiniLM-L3's 7/8 replaces 32 of its 36 heads), and
    a share that rounds to none or all of a model's heads is not a point of it. A count no share of `fractions`
    gives is named by its own share."""
    shares = {}
    points = results[results.replaced_heads.between(1, results.total_heads - 1)]
    for model, total, k in sorted(set(zip(points.model, points.total_heads, points.replaced_heads))):
        share = next((f for f in fractions if 0 < f < 1 and replaced_count(total, f) == k), k / total)
        shares.setdefault(share, {})[model] = int(k)
    return dict(sorted(shares.items()))


def share_of_full_loss(results: pd.DataFrame, statistics: dict | None, cells: set, models: list,
                       n_boot: int = 2000, fractions=SWEEP_FRACTIONS) -> dict:
    """Per partial point of the run's sweep (``sweep_points``; label "1/2", "7/8", "15/16", ...): the share of the
    full-PAPA loss already lost there (``bootstrap_share``), pooled and per model, over `cells` (where full PAPA
    loses measurably), and the average relative drop at that point."""
    probes = results[(predictor_column(results) == "probe") & results.headline]
    full = {c: p for c, p in point_draws(results, statistics, "all", n=n_boot, pairing="share").items() if c in cells}
    out = {}
    for share, counts in sweep_points(probes, fractions).items():
        label = share_label(share)
        partial = {c: p for c, p in point_draws(results, statistics, share, n=n_boot, pairing="share").items()
                   if c in cells and c[0] in counts}
        if not partial:
            continue
        entry = {"share_of_full_loss": bootstrap_share(partial, full), "relative_drop": bootstrap_average(partial, relative_of),
                 "per_model": {}}
        for model in models:
            mine = {c: p for c, p in partial.items() if c[0] == model}
            if mine:
                entry["per_model"][model] = {"share_of_full_loss": bootstrap_share(mine, full),
                                             "relative_drop": bootstrap_average(mine, relative_of)}
        out[label] = entry
    return out


def half_heads_claim(results: pd.DataFrame, statistics: dict | None, kept: set, losing: set, models: list,
                     n_boot: int = 2000, fractions=SWEEP_FRACTIONS) -> dict:
    """Claim 2 by its rule (module docstring): ``average_claim`` at half of the heads over the cells where full
    PAPA loses measurably (`losing`), an "uninformative" verdict for a model (or the pool) with no such cell, and
    the share of the full-PAPA loss at each partial point of the sweep (``share_of_full_loss``); the sweep's half
    point carries claim 2's own average drop and interval, so that one average has one interval."""
    block = average_claim(results, statistics, "half", losing, models, n_boot)
    block["cells"] = [f"{m} {t}" for m, t in sorted(losing)]
    if not losing:
        block["verdict"] = uninformative(len(kept))
    for model, part in block["per_model"].items():
        if not any(c[0] == model for c in losing):
            part["verdict"] = uninformative(sum(c[0] == model for c in kept))
    block["sweep"] = share_of_full_loss(results, statistics, losing, models, n_boot, fractions)
    half = block["sweep"].get(share_label(1 / 2))
    if half:  # one estimate, one interval: the sweep's half point carries claim 2's own average drop
        half["relative_drop"] = block["relative_drop"]
        for model, part in half["per_model"].items():
            part["relative_drop"] = block["per_model"][model]["relative_drop"]
    if losing:  # how much the claim could have failed: the full-PAPA drop on the same cells
        full = average_claim(results, statistics, "all", losing, models, n_boot)
        for part, whole in ((block, full), *((block["per_model"][m], full["per_model"][m]) for m in models
                                              if m in block["per_model"] and m in full["per_model"])):
            _note_power(part, whole["relative_drop"])
    return block


def _note_power(part: dict, full: dict) -> None:
    """A "holds" of claim 2 whose cells lose less than ``LITTLE_DROP`` even with every head constant (the whole
    interval of that drop below it) could have failed only by half of the heads losing more than all of them: the
    reason says so, and the verdict stays."""
    if _verdict_of(part) == "holds" and full.get("ci_high") is not None and full["ci_high"] < LITTLE_DROP:
        part["verdict"] = {**part["verdict"], "reason": part["verdict"]["reason"] + (
            f"; weak evidence: with every head constant these cells lose {100 * full['value']:.1f}% "
            f"[{100 * full['ci_low']:.1f}, {100 * full['ci_high']:.1f}], under {100 * LITTLE_DROP:.0f}% already, so "
            f"half of the heads could fail the claim only by losing more than all of them")}


def _verdict_of(part: dict) -> str | None:
    return (part.get("verdict") or {}).get("verdict")


def _relabellings(models: int, samples: int = NULL_SAMPLES, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Every permutation of `models` labels ([models!, models], the identity first) up to ``MAX_EXACT_MODELS``,
    else the identity and `samples` random ones; and whether the set is exact."""
    if models <= MAX_EXACT_MODELS:
        return np.array(list(itertools.permutations(range(models))), dtype=int).reshape(-1, models), True
    drawn = np.argsort(np.random.default_rng(seed).random((samples, models)), axis=1)
    return np.vstack([np.arange(models)[None], drawn]), False


def model_level_test(t1: pd.DataFrame, protocols: dict, column: str = "relative_drop", points: dict | None = None,
                     alpha: float = ALPHA, samples: int = NULL_SAMPLES, seed: int = 0) -> dict:
    """Claim 3 at the level at which it varies, the model: per task the Spearman correlation of baseline and
    `column` ("relative_drop", or "contextual_lost" for the share of the contextual signal lost) across its models
    that carry signal (``in_claims``), scored on one dev set with one protocol, and their mean over tasks. The null
    keeps each model's results together: one relabelling of the models applies to every task at once (on a task
    where some models are left out, the relabelling restricted to those it has, in the same order). The p-values
    count the relabellings whose mean is at least (at most) the observed one, over all M! relabellings up to
    ``MAX_EXACT_MODELS`` models, else over `samples` random ones (plus the observed). `smallest_p` is the least p
    this design can give: with three models, 1/6. With `points` (``point_draws`` of full PAPA) the mean also gets
    a bootstrap CI over the cells' paired replicates (relative drop only)."""
    from scipy.stats import rankdata, spearmanr

    rows = t1[t1.in_claims & t1[column].notna()] if column in t1 else t1.iloc[:0]
    models = list(dict.fromkeys(rows.model))
    tasks, used, replicate = {}, [], []
    for task in dict.fromkeys(t1.task):
        part = rows[rows.task == task]
        entry = {"models": len(part), "spearman": None}
        if "differs" in protocols.get(task, {}):
            entry["left_out"] = "the models got different training or dev examples or L"
        elif len(part) < 2:
            entry["left_out"] = "fewer than two models carry signal"
        elif part.baseline.nunique() < 2 or part[column].nunique() < 2:
            entry["left_out"] = "ties throughout"
        else:
            b, d = part.baseline.to_numpy(float), part[column].to_numpy(float)
            entry["spearman"] = float(spearmanr(b, d)[0])
            rb, rd = rankdata(b), rankdata(d)
            used.append((np.array([models.index(m) for m in part.model]), rb - rb.mean(), rd - rd.mean()))
            if points is not None and column == "relative_drop":
                cells = [points[(m, task)] for m in part.model]
                base = np.stack([c["draws"][0] for c in cells], axis=1)
                drop = relative_drop(base, np.stack([c["draws"][1] for c in cells], axis=1))
                replicate.append(_rank_correlation(base, drop))
        tasks[task] = entry
    measured = [t["spearman"] for t in tasks.values() if t["spearman"] is not None]
    out = {"measure": column, "tasks": tasks, "tasks_measured": len(measured), "models": models,
           "tasks_where_it_holds": sum(v > 0 for v in measured),
           "mean_spearman": float(np.mean(measured)) if measured else None, "p_greater": None, "p_less": None,
           "smallest_p": None, "relabellings": 0, "exact": None, "ci_low": None, "ci_high": None, "alpha": alpha}
    if not measured:
        return out
    perms, exact = _relabellings(len(models), samples, seed)
    null = np.zeros(len(perms))
    for idx, rb, rd in used:
        images = perms[:, idx]  # where each relabelling sends this task's models
        order = np.argsort(np.argsort(images, axis=1), axis=1)  # the same relabelling, restricted to them
        null += (rd[order] @ rb) / np.sqrt((rb ** 2).sum() * (rd ** 2).sum())
    null /= len(used)
    observed, eps = null[0], 1e-9  # the identity comes first: the observed mean
    count = (lambda hits: float(hits.mean())) if exact else (lambda hits: float((hits[1:].sum() + 1) / len(hits)))
    # exact where every relabelling is counted and every measured task has every model (then the relabellings act
    # on the data as a group); a task without some models takes each relabelling's order of the models it has,
    # which is not a group action, so the p-values are then approximate
    complete = all(len(idx) == len(models) for idx, _, _ in used)
    out.update(p_greater=count(null >= observed - eps), p_less=count(null <= observed + eps),
               smallest_p=count(null >= null.max() - eps), relabellings=int(len(perms)), exact=exact and complete)
    if replicate:
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


def strength_verdict(test: dict) -> dict:
    """Claim 3's verdict from ``model_level_test``: holds when the mean within-task Spearman is significantly
    positive against the joint relabelling of the models, fails when significantly negative, else undecided, with
    the smallest p the design can give when that is not below the level."""
    if not test["tasks_measured"]:
        return {"verdict": "undecided", "reason": "no task has two or more models that carry signal"}
    how = ("exact" if test["exact"] else f"{test['relabellings'] - 1:,} sampled relabellings"
           if len(test["models"]) > MAX_EXACT_MODELS else "approximate: some tasks lack some models")
    said = (f"mean within-task Spearman {test['mean_spearman']:+.2f} over {test['tasks_measured']} tasks and "
            f"{len(test['models'])} models; one-sided p = {test['p_greater']:.3f} with the models relabelled jointly "
            f"across tasks ({how})")
    if test["p_greater"] < test["alpha"]:
        return {"verdict": "holds", "reason": said}
    if test["p_less"] < test["alpha"]:
        return {"verdict": "fails", "reason": said.replace(f"p = {test['p_greater']:.3f}",
                                                           f"p = {test['p_less']:.3f} for a negative relation")}
    power = (f"; with {len(test['models'])} models the smallest p this design can give is {test['smallest_p']:.3f}, "
             f"so no result could reach p < {test['alpha']:g}" if test["smallest_p"] >= test["alpha"] else "")
    return {"verdict": "undecided", "reason": said + power}


def check_claims(results: pd.DataFrame, statistics: dict | None = None, n_boot: int = 2000,
                 sweep_fractions=SWEEP_FRACTIONS) -> dict:
    """The paper's three claims, measured on these results, each with its verdict by the module's rules.

    Claims 1 and 2: the paper's average relative drop and the average share of the learned signal lost (against
    the trivial predictor), pooled and per model, each with a bootstrap CI over cells, seeds and, with per-example
    `statistics`, dev examples (``point_draws``, ``bootstrap_average``). Claim 1 averages the cells that carry
    signal (``cells_in_claims``; the others are in `left_out` with the reason), claim 2 those of them where full
    PAPA loses measurably (``cells_where_full_papa_loses``). Claim 3 is tested at the level of models
    (``model_level_test``), on the relative drop and again on the share of the contextual signal lost; the
    correlation pooled over every cell, which mixes metrics and dev sets, is kept beside it. Claim 2's sweep names
    its points by the run's `sweep_fractions` (``sweep_points``)."""
    t1 = table1(results, statistics, n_boot)
    main = t1[t1.headline]
    kept, losing = cells_in_claims(t1), cells_where_full_papa_loses(t1)
    protocols = protocol_per_task(results)
    models = list(dict.fromkeys(main.model))
    out = {"paper_all_heads_average_relative_drop": PAPER_ALL_HEADS_DROP,
           "thresholds": {"about_paper_upper": about_paper_upper(), "about_paper_factor": ABOUT_PAPER_FACTOR,
                          "little_drop": LITTLE_DROP, "alpha": ALPHA},
           "protocol_per_task": protocols,
           "cells_in_claims": [f"{m} {t}" for m, t in sorted(kept)],
           "left_out": {f"{r.model} {r.task}": r.signal_note for r in main.itertuples() if not r.in_claims},
           "points_with_undefined_drop": [f"{r.model} {r.task}" for r in main[main.relative_drop.isna()].itertuples()],
           "cells_per_model": {m: int(sum(c[0] == m for c in kept)) for m in models},
           "cells": {f"{r.model} {r.task}": {"baseline": float(r.baseline), "papa": float(r.papa),
                                             "relative_drop": float(r.relative_drop),
                                             "relative_drop_low": float(r.relative_drop_low),
                                             "relative_drop_high": float(r.relative_drop_high),
                                             "contextual_lost": float(r.contextual_lost), "in_claims": bool(r.in_claims),
                                             "full_papa_loses": (r.model, r.task) in losing}
                     for r in main.itertuples()}}
    out["all_heads"] = average_claim(results, statistics, "all", kept, models, n_boot)
    out["all_heads"]["contextual_signal_lost"] = {
        "value": float(main.contextual_lost.mean()) if main.contextual_lost.notna().any() else None,
        "points": int(main.contextual_lost.notna().sum()),
        "no_contextual_signal": [f"{r.model} {r.task}" for r in main.itertuples() if r.contextual_note]}
    out["all_heads"]["share_of_pooled_drop"] = _shares_of_pooled_drop(main, kept)
    out["half_heads"] = half_heads_claim(results, statistics, kept, losing, models, n_boot, sweep_fractions)
    test = model_level_test(main, protocols, "relative_drop", point_draws(results, statistics, "all", n=n_boot))
    test["verdict"] = strength_verdict(test)
    contextual = model_level_test(main, protocols, "contextual_lost")
    contextual["verdict"] = strength_verdict(contextual)
    defined = main[main.in_claims].dropna(subset=["relative_drop"])
    out.update(strength_model_level=test, strength_on_contextual_signal=contextual,
               stronger_models_lose_more={"holds": True, "fails": False}.get(test["verdict"]["verdict"]),
               pooled_strength_correlation=bootstrap_correlation(defined["baseline"], defined["relative_drop"],
                                                                 n=n_boot))
    return out


def _shares_of_pooled_drop(main: pd.DataFrame, kept: set) -> dict:
    """Which models drive the pooled claim-1 average: each model's part of the sum of the cells' relative drops."""
    rows = main[[(r.model, r.task) in kept for r in main.itertuples()]].dropna(subset=["relative_drop"])
    total = rows.relative_drop.sum()
    if not len(rows) or total <= 0:
        return {}
    return {m: float(part.relative_drop.sum() / total) for m, part in rows.groupby("model", sort=False)}


def half_heads_by_ranking(runs: dict, kept: set, models: list, n_boot: int = 2000, main: str = "",
                          in_claims: set | None = None) -> pd.DataFrame:
    """Claim 2 measured once per ranking: `runs` maps a ranking to (results, statistics), the run's results with
    that ranking's half of the heads at k = ½ (the baseline, all heads and the references are the same rows for
    every ranking) and their per-example dev statistics, and the claim averages the same cells (`kept`: those where
    full PAPA loses measurably in the main results) under each; `main` names the run's own ranking (its main
    sweep). A ranking with fewer seeds than the baseline (a random order runs with one) is paired with the baseline
    on its seeds only (``point_draws``): its interval has no seed-to-seed noise then, and the `seeds` column says
    so. One row per ranking x model ("all models" for the pooled average): seeds, cells, relative drop and share of
    the learned signal lost with their 95% CIs, cells that gain (pooled rows), verdict and reason (``uninformative``
    where a model has cells `in_claims`, default `kept`, but none of `kept`)."""
    in_claims = kept if in_claims is None else in_claims
    rows = []
    for ranking, (table, statistics) in runs.items():
        block = average_claim(table, statistics, "half", kept, models, n_boot)
        probes = table[(table.predictor == "probe") & table.headline]
        half = probes[probes.replaced_heads == (probes.total_heads / 2).round()]
        seeds = ", ".join(str(int(s)) for s in sorted(set(half.seed)))
        for model, part in [("all models", block), *block["per_model"].items()]:
            drop, lost = part["relative_drop"], part["learned_signal_lost"]
            losing = [c for c in kept if model in ("all models", c[0])]
            verdict = (uninformative(sum(model in ("all models", c[0]) for c in in_claims)) if not losing
                       else part["verdict"])
            rows.append({"ranking": ranking, "main": ranking == main, "model": model, "seeds": seeds,
                         "cells": drop["points"],
                         "relative_drop": drop["value"], "ci_low": drop["ci_low"], "ci_high": drop["ci_high"],
                         "learned_lost": lost["value"], "learned_ci_low": lost["ci_low"],
                         "learned_ci_high": lost["ci_high"], "dev_resampled_cells": drop["dev_resampled_points"],
                         "cells_gaining": block["gains"] if part is block else None,
                         "verdict": verdict["verdict"], "reason": verdict["reason"]})
    return pd.DataFrame(rows)


def probe_strength(summary: pd.DataFrame, left_out=(), seed_drops: pd.DataFrame | None = None,
                   level: float = 0.95) -> dict:
    """Claim 3 within a model: does a stronger probe of the same model (more training examples, a higher
    baseline) lose more? Per model x task of a learning curve (``statistics.curve_summary``) whose cell is in the
    claims (not in `left_out`), whose baseline beats both references at every size, and whose baseline and drop
    vary across the sizes:
    - "cells": the Spearman correlation of baseline and relative drop across the training sizes (of the seed
      means: with three sizes one of -1, -0.5, 0.5, 1, descriptive), "mean_spearman" and "positive" (how many);
    - "change": how the relative drop moves from the smallest training size to the largest: with `seed_drops`
      (``statistics.curve_seed_drops``), the mean over the seeds that have both sizes of each seed's change, and
      with two seeds or more its `level` interval (Student's t with one degree of freedom fewer than the seeds;
      with three seeds the half-width is 4.3 standard errors); without, the change of the seed means and no
      interval;
    - "moved": the cells whose interval lies above zero ("grows"), below it ("falls"), or spans it ("within
      noise"); empty when no cell has an interval."""
    from scipy.stats import spearmanr, t

    cells, change = {}, {}
    for (model, task), part in summary.groupby(["model", "task"], sort=True):
        references = part[["trivial", "attention_free"]].max(axis=1)
        if f"{model} {task}" in left_out or len(part) < 3 or not (part.baseline > references).all():
            continue
        part = part.sort_values("train_examples")
        if part.baseline.nunique() < 2 or part.relative_drop.nunique() < 2:
            continue
        cell = f"{model} {task}"
        cells[cell] = float(spearmanr(part.baseline, part.relative_drop)[0])
        first, last = int(part.train_examples.iloc[0]), int(part.train_examples.iloc[-1])
        entry = {"from": first, "to": last, "seeds": 0,
                 "change": float(part.relative_drop.iloc[-1] - part.relative_drop.iloc[0]),
                 "ci_low": None, "ci_high": None}
        if seed_drops is not None:
            mine = seed_drops[(seed_drops.model == model) & (seed_drops.task == task)]
            at = mine.pivot_table(index="seed", columns="train_examples", values="relative_drop")
            paired = (at[last] - at[first]).dropna() if {first, last} <= set(at.columns) else pd.Series(dtype=float)
            if len(paired):
                entry.update(seeds=len(paired), change=float(paired.mean()))
            if len(paired) > 1:
                half = float(t.ppf(0.5 + level / 2, len(paired) - 1) * paired.std(ddof=1) / np.sqrt(len(paired)))
                entry.update(ci_low=entry["change"] - half, ci_high=entry["change"] + half)
        change[cell] = entry
    moved = {}
    for cell, c in change.items():
        if c["ci_low"] is not None:
            where = "grows" if c["ci_low"] > 0 else "falls" if c["ci_high"] < 0 else "within noise"
            moved.setdefault(where, []).append(cell)
    return {"cells": cells, "mean_spearman": float(np.mean(list(cells.values()))) if cells else None,
            "positive": sum(v > 0 for v in cells.values()), "change": change, "moved": moved}


