"""The run's cached steps before any probe: the data subsets every step shares, the constant matrices (with the
baseline's features from the same pass, within the feature cache's budget), and the head rankings (gates, input
dependence and variance scores, random orders). Each is stored in the run folder with a fingerprint of its inputs
and the digest of the code that computed it, and reused while neither changed (``runs.cached_step``)."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from ..core.averages import AttentionAverages, AveragesMismatchError, compute_average_attention
from ..core.backbones import cached_model, precision_of, probe_config
from ..settings.choices import RANKINGS
from ..core.head_scores import SCORE_DEFINITION, SCORES, head_scores, random_ranking, ranking_from_scores
from ..core.layout import Encoded, encode, truncated_share
from ..core.models import describe
from ..core.packing import backbone_batches
from ..core.probe import rank_heads_by_gates
from ..core.features import averages_and_features, save_features
from ..settings.profiles import Profile
from ..records.runs import (cached_step, code_digest, fingerprint, progress_enabled, provenance, reusable,
                   slug)
from ..settings.tasks import TaskSplit, get_task, load_task


code_digest()  # read now, beside the modules this process computes with (``runs.code_digest``)


def task_data(task: str, split: str, n: int | None, seed: int = 0, skip: int = 0) -> TaskSplit:
    """A split, cut to a random subset of n examples (fixed seed, so every step sees the same examples); with
    `skip`, the n examples after the first `skip` of the same order (disjoint from the usual subset)."""
    return load_task(task, split).sample(n, seed=seed, skip=skip)


def encoded(model_name: str, data: TaskSplit, length: int) -> Encoded:
    return encode(data, cached_model(model_name)[1], length)


def averages_path(run_dir: Path, model_name: str, task: str, length: int) -> Path:
    return Path(run_dir) / "averages" / f"{model_name.replace('/', '--')}__{task}__L{length}.safetensors"


def averages_key(profile: Profile, model_name: str, task: str, data: TaskSplit) -> str:
    """What the constant matrices of (model, task) are built from: model, exactly which examples, L, the
    backbone's precision and passes. Never timings or notes, so identical averages keep every result built on
    them; every later step's key includes this one, so no step made with packed passes serves a padded run or the
    other way round."""
    return fingerprint({"step": "averages", "model": model_name, "task": task, "data": data.checksum,
                         "examples": len(data), "L": profile.length(task),
                         "precision": precision_of(profile, model_name), "passes": profile.passes})


def average_attention(run_dir: Path, profile: Profile, model_name: str, task: str,
                      keep_features: bool = True) -> AttentionAverages:
    """Constant matrices of (model, task): loaded when already built from the same inputs, else computed.
    Their metadata's `key` (``averages_key``) is what every later step's cache key includes. With
    `keep_features` (the main sweep), a pass over the probe's own training examples also saves them as the
    baseline's features, which the k = 0 probes use and remove."""
    length = profile.length(task)
    data = task_data(task, "train", profile.size(model_name, "average_examples", task))
    key = averages_key(profile, model_name, task, data)
    path = averages_path(run_dir, model_name, task, length)
    model, _ = cached_model(model_name)
    precision = precision_of(profile, model_name)
    found = stored_averages(path, model, length)
    if reusable(path, None if found is None else {"fingerprint": found.meta.get("key"), "code": found.meta.get("code")},
                key):
        return found
    start = time.time()
    train_data = task_data(task, "train", profile.size(model_name, "train_examples", task))
    inputs = encoded(model_name, data, length)
    if (keep_features and profile.protocol == "cached" and train_data.checksum == data.checksum
            and feature_cache_gb(run_dir) + features_gb(model, inputs) <= FEATURE_CACHE_GB):
        # the probe trains on these very examples: keep the pass's hidden states as the baseline's features (while
        # the cache has room; else the k = 0 probes compute them again)
        result, features = averages_and_features(model, get_task(task), inputs,
                                                 progress=progress_enabled(), precision=precision,
                                                 data_checksum=data.checksum, passes=profile.passes)
        save_features(features, baseline_features_path(run_dir, model_name, task, length),
                      baseline_features_meta(model_name, data, length, precision, profile.passes))
    else:
        result = compute_average_attention(model, backbone_batches(inputs, 32, profile.passes),
                                           task=task, data_checksum=data.checksum, progress=progress_enabled(),
                                           precision=precision)
    result.meta.update(key=key, seconds=round(time.time() - start, 2), data_note=data.note, **provenance(path))
    result.save(path)
    return result


def stored_averages(path: Path, model, length: int) -> AttentionAverages | None:
    """The averages stored at `path`, None when there are none or the file cannot be read."""
    if not path.exists():
        return None
    try:
        return AttentionAverages.load(path, model=model, length=length)
    except AveragesMismatchError:
        raise
    except Exception:  # safetensors reports a damaged file in errors of its own
        return None


def baseline_features_path(run_dir: Path, model_name: str, task: str, length: int) -> Path:
    """The baseline's training features, saved by the averages pass until the k = 0 probes have used them."""
    return Path(run_dir) / "features" / f"{slug(model_name, task, 'k0', 'train', f'L{length}')}.pt"


def baseline_features_meta(model_name: str, data: TaskSplit, length: int, precision: str, passes: str) -> dict:
    return {"model": model_name, "data": data.checksum, "examples": len(data), "L": length, "precision": precision,
            "passes": passes, "code": code_digest()}


# GiB of baseline features the averages' pass may leave on disk for the k = 0 probes (``average_attention``): the
# features of the cells beyond it are computed again by their k = 0 probes, one more pass over the training examples
FEATURE_CACHE_GB = 8.0


def features_gb(model, data: Encoded) -> float:
    """At most how many GiB the fp16 features of `data`'s real tokens take (every hidden-state level)."""
    info = describe(model)
    return int(data.attention_mask.sum()) * (info["layers"] + 1) * info["hidden"] * 2 / 1024 ** 3


def feature_cache_gb(run_dir: Path) -> float:
    """Size on disk of the saved features in the run folder."""
    return round(sum(p.stat().st_size for p in (Path(run_dir) / "features").glob("*")) / 1024 ** 3, 3)


def head_ranking(run_dir: Path, profile: Profile, model_name: str, task: str, method: str | None = None,
                 order: int = 0, seed: int | None = None, subset: int = 0) -> dict:
    """Heads in the order the partial sweep replaces them (the first k go), by `method` (default: the profile's
    ``ranking``): "gates" sorts by trained gate, ascending (cached in <run>/ranking/<model>__<task>.json);
    "input_dependence" / "variance" by their score, ascending (``head_scores``); "random" is random order
    number `order`. Returns {"ranking", "method", "seconds", ...}; "seconds" is what the ranking cost.
    For a ranking's stability: `subset` 1 makes it from the `rank_examples` that follow the usual ones (disjoint
    from them, ``rank_data``); for the gates, `seed` (default the profile's first) sets the gates' and probe's
    init and data order."""
    method = method or profile.ranking
    if method not in RANKINGS:
        raise ValueError(f"unknown ranking {method!r}; rankings: {', '.join(RANKINGS)}")
    if method == "random":
        info = describe(cached_model(model_name)[0])
        return {"ranking": random_ranking(info["layers"], info["heads"], seed=order), "method": method,
                "order": order, "seconds": 0.0}
    if method != "gates":
        scores = head_scores_of(run_dir, profile, model_name, task, subset)
        return {"ranking": ranking_from_scores(torch.tensor(scores[method])), "method": method,
                "scores": scores[method], "seconds": scores["seconds"], "examples": scores["examples"],
                "data": scores.get("data"), "subset": subset}
    avg = average_attention(run_dir, profile, model_name, task)
    data = rank_data(profile, model_name, task, subset)
    seed = profile.seeds[0] if seed is None else seed
    config = probe_config(profile, model_name, batch_size=GATES_BATCH_SIZE)
    key = fingerprint({"averages": avg.meta["key"], "examples": len(data), "data": data.checksum,
                        "epochs": profile.rank_epochs, "precision": config.precision, "lr": config.lr,
                        "gate_lr": profile.gate_lr, "seed": seed, "batch_size": config.batch_size})
    # (the gates' probe runs in the backbone's pass)
    variant = ((f"seed{seed}",) if seed != profile.seeds[0] else ()) + ((f"subset{subset}",) if subset else ())
    path = Path(run_dir) / "ranking" / f"{slug(model_name, task, *variant)}.json"

    def train_gates():
        model, _ = cached_model(model_name)
        result = rank_heads_by_gates(model, get_task(task), encoded(model_name, data, profile.length(task)), avg,
                                     epochs=profile.rank_epochs, seed=seed, config=config,
                                     progress=progress_enabled())
        return {**result, "model": model_name, "task": task, "examples": len(data), "data": data.checksum,
                "epochs": profile.rank_epochs, "gate_lr": profile.gate_lr, "seed": seed, "subset": subset,
                "method": "gates"}

    return {**cached_step(path, key, train_gates), "method": "gates"}


# the gates train with the paper's batch whatever batch the profile's probes take: a ranking made from a few hundred
# examples in a few epochs needs its steps
GATES_BATCH_SIZE = 16


def rank_data(profile: Profile, model_name: str, task: str, subset: int = 0) -> TaskSplit:
    """The training examples a head ranking is made from: the `rank_examples` of the usual order, or with
    `subset` 1 the as many that follow them (disjoint, for the ranking's stability)."""
    n = profile.size(model_name, "rank_examples", task)
    if subset and n is None:
        raise ValueError(f"a disjoint subset needs a subset size: {profile.name} ranks heads on the whole "
                         f"{task} training split (rank_examples=None)")
    return task_data(task, "train", n, skip=subset * n if subset else 0)


def head_scores_of(run_dir: Path, profile: Profile, model_name: str, task: str, subset: int = 0) -> dict:
    """Input-dependence and variance scores ([layers][heads] lists) of every head of (model, task), over the
    ranking's training examples (``rank_data``; `subset` 1: a disjoint set of as many), against the run's
    constant matrices, in fp32; cached in <run>/ranking/<model>__<task>__scores[__subset1].json with the
    seconds they took."""
    avg = average_attention(run_dir, profile, model_name, task)
    data = rank_data(profile, model_name, task, subset)
    key = fingerprint({"averages": avg.meta["key"], "examples": len(data), "data": data.checksum,
                        "scores": SCORES, "definition": SCORE_DEFINITION})
    variant = (f"subset{subset}",) if subset else ()
    path = Path(run_dir) / "ranking" / f"{slug(model_name, task, 'scores', *variant)}.json"

    def score_heads():
        model, _ = cached_model(model_name)
        start = time.time()
        scores = head_scores(model, avg, backbone_batches(encoded(model_name, data, profile.length(task)), 32,
                                                          profile.passes))
        return {**{name: scores[name].tolist() for name in SCORES}, "seconds": round(time.time() - start, 2),
                "method": "scores", "model": model_name, "task": task, "examples": len(data),
                "data": data.checksum, "subset": subset}

    return cached_step(path, key, score_heads)


def stability_variants(profile: Profile, model_name: str) -> dict:
    """The rankings of `model_name` whose stability the profile measures (``ranking_stability_table``), each with
    the other rankings it is compared with: {method: {variant name: head_ranking arguments}}; {} when the profile
    does not measure stability."""
    if not profile.ranking_stability:
        return {}
    methods = [profile.ranking] + (["gates"] if profile.ranking != "gates" and "gates" in profile.compare_rankings
                                   and model_name in profile.compare_models else [])
    found = {}
    for method in (m for m in methods if m != "random"):
        found[method] = {"disjoint subset": {"subset": 1}}
        if method == "gates":
            found[method] = {"another seed": {"seed": profile.seeds[1 % len(profile.seeds)]}, **found[method]}
    return found


def replaced_heads(k: int, total: int, ranking=None):
    """The heads a sweep configuration replaces: none for k = 0, "all" for k = total, else the FIRST k heads of
    the ranking (the heads that lean most on their constant matrix)."""
    if not 0 <= k <= total:
        raise ValueError(f"cannot replace {k} of {total} heads")
    if k == 0:
        return []
    if k == total:
        return "all"
    if ranking is None:
        raise ValueError(f"replacing {k} of {total} heads needs a head ranking (head_ranking)")
    if len(ranking) != total:
        raise ValueError(f"the head ranking lists {len(ranking)} heads, the model has {total}")
    return [tuple(h) for h in ranking[:k]]


def truncation_table(profile: Profile, lengths=(64, 128)) -> pd.DataFrame:
    """Per model (tokenizer) x task x L (`lengths` and the profile's own L of the task): the share of examples the
    PAPA layout truncates (``truncated_share``) in the probe's training subset and in the dev data the profile
    scores; `used` marks the profile's L. For choosing L per task."""
    rows = []
    for model_name in profile.models:
        tokenizer = cached_model(model_name)[1]
        for task in profile.tasks:
            parts = {"train": task_data(task, "train", profile.size(model_name, "train_examples", task)),
                     "dev": task_data(task, "validation", profile.size(model_name, "dev_examples", task))}
            for length in sorted({*lengths, profile.length(task)}):
                rows.append({"model": model_name, "task": task, "L": length, "used": length == profile.length(task),
                             **{f"{split}_truncated": round(truncated_share(data, tokenizer, length), 4)
                                for split, data in parts.items()},
                             "train_examples": len(parts["train"]), "dev_examples": len(parts["dev"])})
    return pd.DataFrame(rows)
