"""The run's probe steps: the sweep over the number of replaced heads (with the baseline's references), the same
sweep under the rankings a profile compares, and the learning curves. Each probe's result is one ``ProbeRecord``,
stored per (configuration, predictor, seed) with a fingerprint of its inputs and the digest of the code that
computed it (``runs.cached``)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..core.backbones import cached_model, probe_config
from ..core.models import describe
from ..core.probe import ProbeResult, train_probe
from ..core.features import extract_features, load_features
from ..settings.profiles import Profile, recorded_settings
from ..core.references import trivial_metrics, trivial_reference
from ..records.runs import (cached, code_digest, fingerprint, progress_enabled, rankings_index_path,
                            slug, store, write_json)
from .steps import (average_attention, baseline_features_meta, baseline_features_path, encoded, head_ranking,
                    replaced_heads, stability_variants, task_data)
from ..settings.tasks import get_task, load_task


@dataclass
class ProbeRecord:
    """One predictor's result on one configuration, as the run folder stores it and the tables read it: the cell
    and its data (model, task, sizes, L), the configuration (replaced heads, their ranking), the predictor
    ("probe", "attention_free" or "trivial") and seed, its dev metrics and dev curve, and what it cost."""

    model: str
    task: str
    total_heads: int
    train_examples: int
    dev_examples: int
    L: int
    data_note: str | None
    predictor: str
    replaced_heads: int
    seed: int | None
    metrics: dict
    curve: list = field(default_factory=list)
    heads: list | str = field(default_factory=list)
    ranking: str | None = None
    protocol: str | None = None
    probe_seconds: float = 0.0
    feature_seconds: float = 0.0
    dev_statistics: list | None = None
    prediction_share: float | None = None

    @classmethod
    def of(cls, cell: dict, predictor: str, k: int, seed, result: ProbeResult, feature_seconds: float,
           **configuration) -> "ProbeRecord":
        """The record of a trained probe (`result`) of `cell` ({model, task, sizes, L, data_note})."""
        return cls(**cell, predictor=predictor, replaced_heads=k, seed=seed, metrics=result.metrics,
                   curve=result.curve, probe_seconds=result.seconds, feature_seconds=feature_seconds,
                   dev_statistics=_listed(result.dev_statistics), prediction_share=result.prediction_share,
                   **configuration)


# file name parts of each predictor's results (the paper's probe keeps the names it always had)
PREDICTOR_FILES = {"probe": (), "attention_free": ("embeddings",), "trivial": ("trivial",)}


def record_name(model_name: str, task: str, label: tuple, k: int, predictor: str, seed) -> str:
    """The file name of one probe result of a sweep (`label`: the ranking's name outside the main sweep)."""
    return f"{slug(model_name, task, *label, f'k{k}', *PREDICTOR_FILES[predictor], f'seed{seed}')}.json"


def ranking_sweep_name(model_name: str, task: str, record: dict) -> str:
    """Where in <run>/ranking_sweep/ ``ranking_comparison`` stored `record`."""
    return record_name(model_name, task, (record["ranking"],), record["replaced_heads"], record["predictor"],
                       record["seed"])


def _listed(statistics):
    """Per-example statistics (numpy, or None for regression) as they are stored in a record."""
    return None if statistics is None else statistics.tolist()


def probe_sweep(run_dir: Path, profile: Profile, model_name: str, task: str, counts, ranking=None,
                ranking_name: str | None = None, seeds=None, folder: str = "probe") -> list[dict]:
    """Probe results for each number of replaced heads in `counts` and every seed of the profile (or `seeds`).

    k = 0 is the probing baseline, k = all heads is full PAPA; other k replace the first k heads of
    `ranking` (``replaced_heads``). The backbone runs once per k (train and dev features), shared by every
    seed. With k = 0 come the two references, on the same dev data: the attention-free probe (the same probe on
    hidden-state level 0 of the same features, same seeds; predictor "attention_free") and the trivial
    predictor (predictor "trivial", no backbone). Results are cached per (k, predictor, seed) in <run>/probe/
    and skipped when their inputs did not change. Records name their ranking (`ranking_name`, default the
    profile's); a sweep under another ranking than the profile's goes to another `folder` (file names then
    carry the ranking's name), so the main results never mix rankings.
    """
    ranking_name = ranking_name or profile.ranking
    seeds = tuple(seeds or profile.seeds)
    label = () if folder == "probe" else (ranking_name,)
    model, _ = cached_model(model_name)
    info = describe(model)
    total = info["layers"] * info["heads"]
    spec = get_task(task)
    length = profile.length(task)
    avg = average_attention(run_dir, profile, model_name, task)
    train_data = task_data(task, "train", profile.size(model_name, "train_examples", task))
    dev_data = task_data(task, "validation", profile.size(model_name, "dev_examples", task))
    config = probe_config(profile, model_name)
    data_key = {"train": [train_data.checksum, len(train_data)], "dev": [dev_data.checksum, len(dev_data)], "L": length}
    cell = {"model": model_name, "task": task, "total_heads": total, "train_examples": len(train_data),
            "dev_examples": len(dev_data), "L": length, "data_note": train_data.note}
    train = dev = None
    results = []

    def path(k, predictor, seed):
        return Path(run_dir) / folder / record_name(model_name, task, label, k, predictor, seed)

    for k in counts:
        heads = replaced_heads(k, total, ranking)
        probes = {"probe": config}
        if k == 0:
            probes["attention_free"] = replace(config, levels="embeddings")
        keys = {predictor: fingerprint({"averages": avg.meta["key"], "heads": heads, "config": asdict(c), **data_key})
                for predictor, c in probes.items()}
        done = {(p, seed): cached(path(k, p, seed), keys[p]) for p in probes for seed in seeds}
        missing = [(p, seed) for (p, seed), r in done.items() if not r or "dev_statistics" not in r]
        trivial_missing = k == 0 and any("dev_statistics" not in (cached(path(0, "trivial", seed), fingerprint(data_key))
                                                                  or {}) for seed in profile.seeds)
        if missing or trivial_missing:
            if train is None:
                train, dev = encoded(model_name, train_data, length), encoded(model_name, dev_data, length)
        if trivial_missing:
            metrics, statistics = trivial_reference(train_data, dev_data, dev)
            for seed in profile.seeds:  # seedless: the same values under every seed, so summaries stay uniform
                store(path(0, "trivial", seed), fingerprint(data_key),
                      asdict(ProbeRecord(**cell, predictor="trivial", replaced_heads=0, seed=seed, metrics=metrics,
                                         dev_statistics=_listed(statistics))))
        if missing:
            start = time.time()
            features = [None, None]
            if config.protocol == "cached":  # one backbone pass per configuration, shared by every seed
                if k == 0:  # saved by the averages pass when it ran over the same examples (memory-mapped)
                    features[0] = load_features(baseline_features_path(run_dir, model_name, task, length),
                                                baseline_features_meta(model_name, train_data, length,
                                                                       config.precision, config.passes))
                features = [found if found is not None else
                            extract_features(model, spec, data, avg, heads, progress=progress_enabled(),
                                             desc=f"{model_name} {task} k={k} {part}", precision=config.precision,
                                             passes=config.passes)
                            for found, part, data in zip(features, ("train", "dev"), (train, dev))]
            feature_seconds = time.time() - start
            for predictor, seed in missing:
                r = train_probe(model, spec, train, dev, seed=seed, config=probes[predictor], averages=avg,
                                heads=heads, train_features=features[0], dev_features=features[1],
                                progress=progress_enabled())
                record = ProbeRecord.of(cell, predictor, k, seed, r, feature_seconds, heads=heads,
                                        ranking=ranking_name if 0 < k < total else None, protocol=config.protocol)
                done[predictor, seed] = store(path(k, predictor, seed), keys[predictor], asdict(record))
            del features
        if k == 0:  # the baseline's features on disk are used up
            baseline_features_path(run_dir, model_name, task, length).unlink(missing_ok=True)
        results.extend(done["probe", seed] for seed in seeds)
    return results


def ranking_comparison(run_dir: Path, profile: Profile, model_name: str, task: str) -> list[dict]:
    """The partial sweep (the profile's ``compare_counts``) under every ranking of
    ``profile.compare_rankings`` other than the profile's own (which the main sweep already ran): deterministic
    rankings with every seed, random orders ("random0", "random1", ...) with one seed each (the profile's seeds in
    turn). Cached in <run>/ranking_sweep/."""
    info = describe(cached_model(model_name)[0])
    counts = profile.compare_counts(model_name, info["layers"] * info["heads"])
    records = []
    for method in profile.compare_rankings:
        if method == profile.ranking:
            continue
        for order in range(profile.random_orders if method == "random" else 1):
            ranking = head_ranking(run_dir, profile, model_name, task, method, order)
            name = f"random{order}" if method == "random" else method
            seeds = (profile.seeds[order % len(profile.seeds)],) if method == "random" else profile.seeds
            records += probe_sweep(run_dir, profile, model_name, task, counts, ranking["ranking"], ranking_name=name,
                                   seeds=seeds, folder="ranking_sweep")
    return records


def compare_rankings(run_dir: Path, profile: Profile, model_name: str, task: str) -> dict:
    """Every ranking step notebook 6 reads for (model, task): the profile's own ranking (notebook 3 makes it too),
    the ranking made again for its stability, every compared ranking, and the sweep under them where the model is
    compared (``ranking_comparison``). Writes what the ranking tables read, and returns it: the index at
    ``runs.rankings_index_path``, with the profile's settings and the code that made it, each ranking as its head
    order, examples and seconds, and the sweep as the names of its records in <run>/ranking_sweep/."""
    def summary(ranking: dict) -> dict:
        return {"ranking": [list(map(int, h)) for h in ranking["ranking"]], "examples": ranking.get("examples"),
                "seconds": round(ranking["seconds"], 2)}

    rankings = {profile.ranking: summary(head_ranking(run_dir, profile, model_name, task))}
    stability = {method: {name: summary(head_ranking(run_dir, profile, model_name, task, method, **change))
                          for name, change in variants.items()}
                 for method, variants in stability_variants(profile, model_name).items()}
    for method in stability:
        rankings.setdefault(method, summary(head_ranking(run_dir, profile, model_name, task, method)))
    sweep = []
    if profile.compare_rankings:
        for method in dict.fromkeys(("gates", *profile.compare_rankings)):
            rankings.setdefault(method, summary(head_ranking(run_dir, profile, model_name, task, method)))
        if model_name in profile.compare_models:
            records = ranking_comparison(run_dir, profile, model_name, task)
            sweep = [ranking_sweep_name(model_name, task, r) for r in records]
    index = {"model": model_name, "task": task, "settings": recorded_settings(asdict(profile)),
             "code": code_digest(), "rankings": rankings, "stability": stability, "sweep": sweep}
    write_json(rankings_index_path(run_dir, model_name, task), index)
    return index


def learning_curve(run_dir: Path, profile: Profile, model_name: str, task: str) -> list[dict]:
    """Baseline and full PAPA of `model_name` at each training size of ``profile.curve_sizes``, with
    the trivial predictor and the attention-free probe of the same training subset, on the profile's dev subset
    (the constant matrices stay those of the main run). Sizes are nested (the first n of one random order), so
    the backbone runs once per configuration over the largest subset. Cached per (size, predictor, seed) in
    <run>/curve/."""
    model, _ = cached_model(model_name)
    info = describe(model)
    total = info["layers"] * info["heads"]
    spec, length = get_task(task), profile.length(task)
    avg = average_attention(run_dir, profile, model_name, task, keep_features=False)
    pool = load_task(task, "train")
    sizes = sorted({min(n, len(pool)) for n in profile.curve_sizes})
    order = np.random.RandomState(0).permutation(len(pool))  # as task_data's subsets: the first n of one order
    largest = pool.rows(order[:sizes[-1]])
    dev_data = task_data(task, "validation", profile.size(model_name, "dev_examples", task))
    config = probe_config(profile, model_name, protocol="cached")
    runs = {("probe", 0): config, ("probe", total): config, ("attention_free", 0): replace(config, levels="embeddings")}
    train = dev = None
    records = []

    def path(n, predictor, k, seed):
        return Path(run_dir) / "curve" / f"{slug(model_name, task, f'n{n}', predictor, f'k{k}', f'seed{seed}')}.json"

    for heads_k in (0, total):
        features = None
        for n in sizes:
            data = pool.rows(order[:n])
            cell = {"model": model_name, "task": task, "train_examples": n, "dev_examples": len(dev_data), "L": length,
                    "total_heads": total, "data_note": data.note}
            data_key = {"averages": avg.meta["key"], "train": [data.checksum, n], "dev": [dev_data.checksum, len(dev_data)],
                        "L": length}
            for (predictor, k), cfg in runs.items():
                if k != heads_k:
                    continue
                key = fingerprint({**data_key, "k": k, "config": asdict(cfg)})
                for seed in profile.curve_seeds:
                    found = cached(path(n, predictor, k, seed), key)
                    if found is not None:
                        records.append(found)
                        continue
                    if train is None:
                        train, dev = encoded(model_name, largest, length), encoded(model_name, dev_data, length)
                    start = time.time()
                    if features is None:  # train (largest subset) and dev features of this configuration
                        heads = replaced_heads(k, total)
                        features = [extract_features(model, spec, part, avg, heads, progress=progress_enabled(),
                                                     desc=f"curve {model_name} {task} k={k} {name}",
                                                     precision=config.precision, passes=config.passes)
                                    for name, part in (("train", train), ("dev", dev))]
                    feature_seconds = time.time() - start
                    r = train_probe(model, spec, train.head(n), dev, seed=seed, config=cfg, averages=avg,
                                    heads=replaced_heads(k, total), train_features=features[0].head(n),
                                    dev_features=features[1], progress=progress_enabled())
                    record = ProbeRecord.of(cell, predictor, k, seed, r, feature_seconds, heads=replaced_heads(k, total))
                    records.append(store(path(n, predictor, k, seed), key, asdict(record)))
            if heads_k == 0:  # the trivial predictor of this training subset (no backbone)
                key = fingerprint({**data_key, "predictor": "trivial"})
                found = cached(path(n, "trivial", 0, 0), key)
                if found is None:
                    if dev is None:
                        dev = encoded(model_name, dev_data, length)
                    found = store(path(n, "trivial", 0, 0), key,
                                  asdict(ProbeRecord(**cell, predictor="trivial", replaced_heads=0, seed=None,
                                                     metrics=trivial_metrics(data, dev_data, dev))))
                records.append(found)
        del features
    return records
