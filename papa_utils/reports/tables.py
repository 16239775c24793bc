"""Tables of a run: tidy results, convergence, learning curves, rankings, timing. They only read what the steps
stored in the run folder, and load no model and no data: a table whose inputs are missing, or were made with other
settings or code, says which notebook makes them."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.averages import AttentionAverages
from ..records.runs import (RECOMPUTED, MissingStepError, atomic_path, code_digest, rankings_index_path, read_json,
                            results_dir)
from ..settings.profiles import Profile, recorded_settings
from ..settings.tasks import get_task
from .statistics import STATISTICS_FILE, ranking_agreement, ranking_family, statistics_key, table1, tail_slope
from .verdicts import FLAT_TAIL, cells_in_claims, cells_where_full_papa_loses, half_heads_by_ranking

RANKINGS_NOTEBOOK = "06_gate_free_ranking"  # makes every ranking and sweep the ranking tables read
CLAIMS_NOTEBOOK = "04_model_strength"  # writes claims.json


def curve_table(records: list[dict]) -> pd.DataFrame:
    """Learning-curve records as tidy rows (headline metric only): model, task, train_examples, predictor,
    configuration ("baseline" / "PAPA" / the predictor's name), seed, metric, value."""
    rows = []
    for r in records:
        metric = get_task(r["task"]).metric
        configuration = (r["predictor"] if r["predictor"] != "probe"
                         else "baseline" if r["replaced_heads"] == 0 else "PAPA")
        rows.append({"model": r["model"], "task": r["task"], "train_examples": r["train_examples"],
                     "predictor": r["predictor"], "configuration": configuration, "seed": r["seed"],
                     "metric": metric, "value": r["metrics"][metric],
                     "seconds": round(r["probe_seconds"] + r["feature_seconds"], 2)})
    return pd.DataFrame(rows)


def results_table(records: list[dict]) -> pd.DataFrame:
    """Tidy rows: one per model x task x replaced heads x seed x metric."""
    rows = []
    for r in records:
        for metric, value in r["metrics"].items():
            rows.append({"model": r["model"], "task": r["task"], "replaced_heads": r["replaced_heads"],
                         "dynamic_heads": r["total_heads"] - r["replaced_heads"], "total_heads": r["total_heads"],
                         "seed": r["seed"], "metric": metric, "value": value,
                         "predictor": r.get("predictor", "probe"), "ranking": r.get("ranking"),
                         "headline": metric == get_task(r["task"]).metric, "train_examples": r["train_examples"],
                         "dev_examples": r["dev_examples"], "L": r["L"],
                         "seconds": round(r["probe_seconds"] + r["feature_seconds"], 2), "note": r["data_note"],
                         "prediction_share": r.get("prediction_share")})
    return pd.DataFrame(rows)


def convergence_table(records: list[dict], schedule: str = "constant", last: int = 3) -> pd.DataFrame:
    """Whether each probe's dev curve ended flat: per model x task x predictor x replaced heads, the headline
    metric's mean over seeds at each of the `last` epochs (columns "epoch_<n>"), the last epoch's gain over the one
    before (`last_gain`), and the tail's slope: the least-squares slope of those means against the training done,
    counted in epochs at the peak learning rate (``statistics.tail_slope``). Under a decaying rate a curve flattens because
    its steps shrink, not because it has converged; the slope undoes that: it is what one more epoch at the peak
    rate would move the metric by. `tail_slope_se`: its standard error over seeds (each seed's own slope).
    `converged`: the slope's size is below ``FLAT_TAIL`` points, or within twice its standard error (no movement
    shown beyond the seeds' noise); a curve that rises or falls by more fails, and a swing fails as far as it tilts
    the fitted line. The final epoch is what the
    results report."""
    rows = []
    for r in records:
        metric = get_task(r["task"]).metric
        for point in r.get("curve") or []:
            rows.append({"model": r["model"], "task": r["task"], "predictor": r.get("predictor", "probe"),
                         "replaced_heads": r["replaced_heads"], "total_heads": r["total_heads"], "metric": metric,
                         "seed": r["seed"], "epoch": point["epoch"], "value": point[metric]})
    columns = ["model", "task", "predictor", "replaced_heads", "total_heads", "metric"]
    if not rows:
        return pd.DataFrame(columns=columns + ["seeds", "last_gain", "tail_slope", "tail_slope_se", "converged"])
    frame = pd.DataFrame(rows)
    means = frame.pivot_table(index=columns, columns="epoch", values="value", aggfunc="mean")
    seeds = frame.groupby(columns)["seed"].nunique()
    epochs = sorted(means.columns)[-last:]
    table = means[epochs].rename(columns=lambda e: f"epoch_{e}")
    table["seeds"] = seeds
    table["last_gain"] = (means[epochs[-1]] - means[epochs[-2]]) if len(epochs) > 1 else np.nan
    table["tail_slope"] = tail_slope(means[epochs].to_numpy(float), epochs, max(means.columns), schedule)
    per_seed = frame.pivot_table(index=columns + ["seed"], columns="epoch", values="value", aggfunc="mean")
    slopes = pd.Series(tail_slope(per_seed[epochs].to_numpy(float), epochs, max(means.columns), schedule),
                       index=per_seed.index).groupby(level=columns)
    table["tail_slope_se"] = slopes.std() / np.sqrt(slopes.count())  # NaN with one seed
    table["converged"] = (table["tail_slope"].abs() < FLAT_TAIL) | (
        table["tail_slope"].abs() <= 2 * table["tail_slope_se"])
    return table.reset_index()


def _main_records(run_dir: Path, profile: Profile) -> list[dict]:
    """The main sweep's records of the profile's models, tasks, seeds and shares of heads (a point left in the
    folder by a sweep with other shares does not count)."""
    return [r for path in sorted((Path(run_dir) / "probe").glob("*.json")) if (r := read_json(path))
            and r["model"] in profile.models and r["task"] in profile.tasks and r["seed"] in profile.seeds
            and r["replaced_heads"] in profile.sweep_counts(r["model"], r["total_heads"])]


def all_results(run_dir: Path, profile: Profile) -> pd.DataFrame:
    """Every cached probe result of the profile's models and tasks, as a tidy table."""
    return results_table(_main_records(run_dir, profile))


def save_table(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def write_results(run_dir: Path, profile: Profile) -> pd.DataFrame:
    """Collect every cached probe result into <run>/results/probe_results.csv (tidy), whether each dev curve ended
    flat into convergence.csv (``convergence_table``) and their per-example dev
    statistics into <run>/results/dev_statistics.npz (``statistics.statistics_key`` -> counts; for the paired
    bootstrap over dev examples); return the table."""
    records = _main_records(run_dir, profile)
    baselines = {(r["model"], r["task"]) for r in records if r["replaced_heads"] == 0 and r["predictor"] == "probe"}
    missing = [f"{m} x {t}" for m in profile.models for t in profile.tasks if (m, t) not in baselines]
    if missing:
        raise MissingStepError(f"no probing baseline in {Path(run_dir) / 'probe'} for {', '.join(missing)}",
                               "02_probe_baselines")
    table = results_table(records)
    save_table(table, results_dir(run_dir) / "probe_results.csv")
    save_table(convergence_table(records, profile.lr_schedule), results_dir(run_dir) / "convergence.csv")
    statistics = dev_statistics(records)
    with atomic_path(results_dir(run_dir) / STATISTICS_FILE) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **statistics)
    return table


def dev_statistics(records: list[dict]) -> dict:
    """Per-example dev statistics of probe records, filed by ``statistics.statistics_key``."""
    return {statistics_key(r["model"], r["task"], r.get("predictor", "probe"), r["replaced_heads"], r["seed"]):
            np.asarray(r["dev_statistics"], dtype=np.int32) for r in records if r.get("dev_statistics")}


def timing(run_dir: Path, profile: Profile) -> dict:
    """Seconds spent per step, summed over the grid: averages (with the baseline's training features when they
    come from the same pass), ranking (gates), head scores (input dependence and variance), feature passes,
    probe training (the paper's probe and the attention-free one), the ranking comparison's sweeps (passes and
    probes), and the learning curve (its feature passes and probes)."""
    run_dir = Path(run_dir)
    out = {"averages": 0.0, "ranking": 0.0, "head_scores": 0.0, "feature_passes": 0.0, "probe_training": 0.0,
           "ranking_comparison": 0.0, "learning_curve": 0.0}
    for path in (run_dir / "averages").glob("*.safetensors"):
        out["averages"] += AttentionAverages.load(path).meta.get("seconds") or 0
    for path in (run_dir / "ranking").glob("*.json"):
        r = read_json(path) or {}
        out["head_scores" if r.get("method") == "scores" else "ranking"] += r.get("seconds", 0)
    for folder, probes, passes in (("probe", "probe_training", "feature_passes"),
                                   ("ranking_sweep", "ranking_comparison", "ranking_comparison")):
        seen = set()
        for path in (run_dir / folder).glob("*.json"):
            r = read_json(path) or {}
            out[probes] += r.get("probe_seconds", 0)
            key = (r.get("model"), r.get("task"), r.get("ranking"), r.get("replaced_heads"), r.get("feature_seconds"))
            if key not in seen:  # one feature pass per configuration, recorded with each of its seeds and predictors
                seen.add(key)
                out[passes] += r.get("feature_seconds", 0)
    for path in (run_dir / "curve").glob("*.json"):  # a pass's time is recorded once, with the probe that ran it
        r = read_json(path) or {}
        out["learning_curve"] += r.get("probe_seconds", 0) + r.get("feature_seconds", 0)
    return {k: round(v, 1) for k, v in out.items()}


# the run folder's step results: where each kind is stored
STEP_FOLDERS = ("averages", "ranking", "probe", "ranking_sweep", "curve")


def step_provenance(run_dir: Path) -> list[dict]:
    """What every step stored in the run folder records of how it was made (``runs.provenance``): its "invocation"
    and "code", and "recomputed_because" when it replaced a step found in the folder (None for a step stored before
    steps recorded them); one dict per step, with its "path" in the folder."""
    run_dir = Path(run_dir)
    found = []
    for folder in STEP_FOLDERS:
        for path in sorted((run_dir / folder).glob("*.safetensors" if folder == "averages" else "*.json")):
            try:
                record = AttentionAverages.load(path).meta if folder == "averages" else read_json(path)
            except Exception:  # a damaged averages file: the next run computes it again
                record = None
            record = record if isinstance(record, dict) else {}
            found.append({"path": f"{folder}/{path.name}", "invocation": record.get("invocation"),
                          "code": record.get("code"), "recomputed_because": record.get("recomputed_because")})
    return found


def step_census(run_dir: Path, invocation: str) -> dict:
    """How many of the run folder's steps `invocation` computed ("computed"; "recomputed": of those, how many
    replaced a step found in the folder, by reason) and how many it found done ("reused")."""
    steps = step_provenance(run_dir)
    mine = [s for s in steps if s["invocation"] == invocation]
    reasons = Counter(s["recomputed_because"] for s in mine if s["recomputed_because"])
    return {"computed": len(mine), "reused": len(steps) - len(mine), "recomputed": dict(sorted(reasons.items()))}


def step_codes(run_dir: Path) -> dict:
    """Which numerical code computed the run folder's steps: {code digest (``runs.code_digest``): how many steps},
    most first; "not recorded" for a step whose record names no code (stored before steps recorded it, or
    damaged)."""
    return dict(Counter(s["code"] or "not recorded" for s in step_provenance(run_dir)).most_common())


def claims_left_out(run_dir: Path) -> dict:
    """The cells the run's claims leave out, with the reason ({"model task": why}; claims.json's "left_out"), so
    that a later notebook reads the claims' cells instead of deciding them again; refused, with the notebook that
    writes claims.json, when it is missing."""
    claims = read_json(results_dir(run_dir) / "claims.json")
    if not isinstance(claims, dict):
        raise MissingStepError(f"no claims.json in {results_dir(run_dir)}", CLAIMS_NOTEBOOK)
    return claims.get("left_out", {})


def rankings_index(run_dir: Path, profile: Profile, model_name: str, task: str) -> dict:
    """What notebook 6 wrote for (model, task) (``sweeps.compare_rankings``): refused, with the notebook that makes
    it, when it is missing, was made with other settings of the profile, or by other numerical code."""
    path = rankings_index_path(run_dir, model_name, task)
    found = read_json(path)
    if not isinstance(found, dict):
        raise MissingStepError(f"no ranking comparison for {model_name} x {task} in {path.parent}", RANKINGS_NOTEBOOK)
    if found.get("settings") != recorded_settings(asdict(profile)):
        raise MissingStepError(f"{path.name} in {path.parent} was made with other settings of the profile",
                               RANKINGS_NOTEBOOK)
    if found.get("code") != code_digest():
        raise MissingStepError(f"{path.name} in {path.parent} {RECOMPUTED['other code']}", RANKINGS_NOTEBOOK)
    return found


def _compared_sweep(run_dir: Path, index: dict) -> list[dict]:
    """The records of the sweep under the compared rankings that `index` names, each computed by the index's code."""
    records = [read_json(Path(run_dir) / "ranking_sweep" / name) for name in index["sweep"]]
    if any(not isinstance(r, dict) or r.get("code") != index["code"] for r in records):
        raise MissingStepError(f"a record of the ranking sweep of {index['model']} x {index['task']} is missing, "
                               f"damaged or was computed by other code than its index", RANKINGS_NOTEBOOK)
    return records


def ranking_comparison_table(run_dir: Path, profile: Profile) -> pd.DataFrame:
    """Headline metric of every sweep point of the compared models where the rankings are compared
    (``compare_counts``), under every ranking the profile compares: the main sweep of the profile's seeds (k = 0 and
    all heads with ranking "none", shared by every ranking) and
    the sweep under the other rankings that notebook 6 recorded (``rankings_index``). Columns: model, task,
    ranking, seed, replaced_heads, dynamic_heads, total_heads, metric, value."""
    columns = ["model", "task", "ranking", "seed", "replaced_heads", "dynamic_heads", "total_heads", "metric", "value"]
    rows = []
    main = [r for r in _main_records(run_dir, profile) if r.get("predictor", "probe") == "probe"]
    for model_name in profile.compare_models:
        for task in profile.tasks:
            compared = _compared_sweep(run_dir, rankings_index(run_dir, profile, model_name, task))
            for r in [m for m in main if m["model"] == model_name and m["task"] == task] + compared:
                k, total = r["replaced_heads"], r["total_heads"]
                if 0 < k < total and k not in profile.compare_counts(model_name, total):
                    continue  # a point of the main sweep where the rankings are not compared
                metric = get_task(task).metric
                rows.append({"model": model_name, "task": task,
                             "ranking": (r.get("ranking") or "gates") if 0 < k < total else "none",
                             "seed": r["seed"], "replaced_heads": k, "dynamic_heads": total - k,
                             "total_heads": total, "metric": metric, "value": r["metrics"][metric]})
    return pd.DataFrame(rows, columns=columns)


def half_heads_table(run_dir: Path, profile: Profile, n_boot: int = 2000, cells: set | None = None) -> pd.DataFrame:
    """Claim 2 under every ranking of the comparison (``verdicts.half_heads_by_ranking``): on the compared models,
    the main results with their partial points taken from each ranking's sweep in turn (the profile's own ranking
    is the main sweep; random orders count as one ranking, each order with its one seed), over the cells where full
    PAPA loses measurably in the main results (claim 2's cells, or the (model, task) `cells` given), with the same
    paired bootstrap over seeds and dev examples. Empty when the run compares no ranking."""
    models = [m for m in profile.models if m in profile.compare_models]
    main = [r for r in _main_records(run_dir, profile) if r["model"] in models]
    partial = lambda r: 0 < r["replaced_heads"] < r["total_heads"]  # noqa: E731
    by_ranking = {profile.ranking: [r for r in main if partial(r)]}
    for model_name in models:
        for task in profile.tasks:
            for r in _compared_sweep(run_dir, rankings_index(run_dir, profile, model_name, task)):
                by_ranking.setdefault(ranking_family(r["ranking"]), []).append(r)
    if len(by_ranking) < 2:
        return pd.DataFrame()
    shared = [r for r in main if not partial(r)]
    order = ["gates"] + [m for m in by_ranking if m != "gates"]  # the paper's ranking first
    # a ranking's own statistics: the partial points of two rankings share their statistics keys
    runs = {m: (results_table(shared + by_ranking[m]), dev_statistics(shared + by_ranking[m]))
            for m in order if m in by_ranking}
    t1 = table1(*runs[profile.ranking], n_boot)
    kept = cells if cells is not None else cells_where_full_papa_loses(t1)
    return half_heads_by_ranking(runs, kept, models, n_boot, main=profile.ranking,
                                 in_claims=cells if cells is not None else cells_in_claims(t1))


def ranking_stability_table(run_dir: Path, profile: Profile) -> pd.DataFrame:
    """For every (model, task): how the profile's ranking agrees with itself (Spearman correlation, overlap of
    the first halves) when made from a disjoint training subset (the `rank_examples` after the usual ones) and,
    for the gates, when trained with another seed (the profile's second: another init and data order; a score
    has no seed). The gates also on `compare_models` when they are compared but not the profile's ranking. A
    random order has no stability to measure. As notebook 6 recorded them (``rankings_index``). Columns: ranking,
    model, task, compared_with, spearman, first_half_overlap, examples, seconds (what the other ranking took)."""
    columns = ["ranking", "model", "task", "compared_with", "spearman", "first_half_overlap", "examples", "seconds"]
    rows = []
    if profile.ranking_stability:
        for model_name in profile.models:
            indexes = {task: rankings_index(run_dir, profile, model_name, task) for task in profile.tasks}
            methods = {m for index in indexes.values() for m in index["stability"]}
            for method in sorted(methods, key=lambda m: (m != profile.ranking, m)):  # the profile's own first
                for task, index in indexes.items():
                    main = index["rankings"][method]
                    for name, other in index["stability"][method].items():
                        rows.append({"ranking": method, "model": model_name, "task": task, "compared_with": name,
                                     **ranking_agreement(main["ranking"], other["ranking"]),
                                     "examples": other["examples"], "seconds": other["seconds"]})
    return pd.DataFrame(rows, columns=columns)


def ranking_agreement_table(run_dir: Path, profile: Profile) -> pd.DataFrame:
    """For every (model, task) of the profile: how the profile's own ranking and each ranking it compares
    (``compare_rankings``; random: its first order) agrees with the gates (Spearman correlation, overlap of the
    first halves) and what it cost (seconds; the gates' own cost beside it), as notebook 6 recorded them
    (``rankings_index``). Empty when the profile compares none."""
    rows = []
    if profile.compare_rankings:
        for model_name in profile.models:
            for task in profile.tasks:
                rankings = rankings_index(run_dir, profile, model_name, task)["rankings"]
                gates = rankings["gates"]
                for method in dict.fromkeys(m for m in (profile.ranking, *profile.compare_rankings) if m != "gates"):
                    other = rankings[method]
                    rows.append({"model": model_name, "task": task,
                                 "ranking": "random0" if method == "random" else method,
                                 **ranking_agreement(gates["ranking"], other["ranking"]),
                                 "seconds": other["seconds"], "gates_seconds": gates["seconds"]})
    return pd.DataFrame(rows, columns=["model", "task", "ranking", "spearman", "first_half_overlap", "seconds",
                                       "gates_seconds"])
