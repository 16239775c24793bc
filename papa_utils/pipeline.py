"""The reproduction as steps over a grid of models x tasks, with profiles, cached results and a papermill
runner (`python -m papa_utils.pipeline --profile cpu`, which `make figures` calls).

Every step writes its result atomically under the run folder and is skipped when a result built from the
same inputs is already there, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .analysis import statistics_key
from .averages import AttentionAverages, compute_average_attention
from .device import CHOICES, auto_precision, inputs_on, model_device, precision_problem
from .executor import EXECUTORS, CellsFailed, ExecutorError, cell_records, check_executor, run_cells, slurm_options
from .layout import Encoded, encode, truncated_share
from .packing import backbone_batches, check_passes
from .models import TINY_RANDOM, cache_dir, describe, load_model
from .references import trivial_metrics, trivial_reference
from .head_stats import SCORE_DEFINITION, SCORES, head_scores, random_ranking, ranking_agreement, ranking_from_scores
from .probe import (PROBE_DTYPES, ProbeConfig, averages_and_features, extract_features, load_features, rank_heads_by_gates,
                    SWEEP_FRACTIONS, replaced_counts, save_features, train_probe)
from .runs import (ROOT, RunScopeError, absolute_data_dir, atomic_path, claim_run_folder, environment, peak_memory_gb,
                   progress_enabled, repo_relative, write_json)
from .tasks import TaskSplit, get_task, load_task

log = logging.getLogger("papa_utils")

NOTEBOOKS = ["00_anatomy_of_attention", "01_average_attention", "02_probe_baselines", "03_partial_replacement",
             "04_model_strength", "05_probe_strength", "06_gate_free_ranking"]


# how to order the heads for partial replacement: trained gates (the paper), the input-dependence score or
# the variance of a head's rows around its average (``head_stats``), or a random order
RANKINGS = ("gates", "input_dependence", "variance", "random")
SIZE_FIELDS = ("average_examples", "train_examples", "dev_examples", "rank_examples")


@dataclass(frozen=True)
class Profile:
    """What one run covers and how big it is. Sizes are numbers of examples (None = the whole split)."""

    name: str
    models: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...] = (42,)
    average_examples: int | None = None  # training examples averaged into the constant matrices
    train_examples: int | None = None  # probe training subset
    dev_examples: int | None = None
    rank_examples: int | None = None  # training examples a head ranking is made from (gates or scores)
    rank_epochs: int = 1
    gate_lr: float | None = None  # the gates' own learning rate in the head ranking (None: `probe_lr`)
    epochs: int = 15
    probe_lr: float = 2e-5  # the paper's; a higher lr with fewer epochs where the learning curves allow it
    lr_schedule: str = "constant"  # the paper's; "linear" decays to 0 at the last step (``ProbeConfig``)
    length_override: int | None = None  # one L for every task (None: `task_lengths`, else each task's default)
    task_lengths: dict = field(default_factory=dict)  # task -> L (chosen from ``truncation_table`` and cost)
    protocol: str = "cached"  # probe protocol (ProbeConfig): "streaming" when features would not fit in memory
    precision: str = "auto"  # backbone passes: "fp32", "bf16", or "auto": the faster on this machine, per model
    # (``precision_of``; measured once, recorded in run.json)
    task_sizes: dict = field(default_factory=dict)  # task -> {size field: n}, e.g. a cap on a large dev split
    # (a task's sizes replace the defaults above). There is no per-model size or sweep: every model of a profile
    # gets the same examples, L, schedule and sweep, so that models are compared on one dev set per task
    # learning curves (notebook 5): baseline and full PAPA of these models at growing training sizes
    curve_models: tuple[str, ...] = ()
    curve_tasks: tuple[str, ...] = ()
    curve_sizes: tuple[int, ...] = ()  # training examples (the whole split where it is smaller)
    curve_seeds: tuple[int, ...] = (42,)
    # which heads the partial sweep replaces first (``RANKINGS``), and the rankings compared with it (notebook 6)
    # on `compare_models`: at k = 1/2, 7/8, 15/16, deterministic rankings with every seed, `random_orders` random
    # orders with one seed each
    ranking: str = "gates"
    compare_rankings: tuple[str, ...] = ()
    compare_models: tuple[str, ...] = ()
    random_orders: int = 3
    ranking_stability: bool = False  # also rank with another seed and on a disjoint subset (notebook 6)
    # the shares of heads the sweep replaces, the same for every model (the paper's five, ``probe.SWEEP_FRACTIONS``);
    # Table 1 and the claims need 0, 1/2 and 1
    sweep_fractions: tuple = SWEEP_FRACTIONS
    # backbone passes over real tokens only ("packed", ``papa_utils.packing``) or the whole layout ("padded", the
    # reference); a run made one way never reuses steps made the other way (``averages_key``)
    passes: str = "packed"

    def __post_init__(self):
        check_passes(self.passes)
        if self.precision not in CHOICES:
            raise ValueError(f"unknown precision {self.precision!r}; precisions: {', '.join(CHOICES)}")
        for name in (self.ranking, *self.compare_rankings):
            if name not in RANKINGS:
                raise ValueError(f"unknown ranking {name!r}; rankings: {', '.join(RANKINGS)}")
        missing = {0, 1 / 2, 1} - set(self.sweep_fractions)
        if missing:
            raise ValueError(f"sweep_fractions {self.sweep_fractions} lack {sorted(missing)}: Table 1 and the claims "
                             f"need no head, half of them and all of them replaced")
        if self.compare_rankings and self.ranking != "gates" and "gates" not in self.compare_rankings:
            raise ValueError(f"notebook 6 compares rankings with the gates: with ranking {self.ranking!r}, add "
                             f"'gates' to compare_rankings {self.compare_rankings}, or compare none")

    def length(self, task: str) -> int:
        return self.length_override or self.task_lengths.get(task) or get_task(task).length

    def size(self, model_name: str, name: str, task: str | None = None) -> int | None:
        """The task's size, else the profile's (None: the whole split); the same for every model."""
        return self.task_sizes.get(task, {}).get(name, getattr(self, name))

    def sweep_counts(self, model_name: str, total_heads: int) -> list[int]:
        """How many heads each configuration of `model_name`'s sweep replaces (``probe.replaced_counts``)."""
        return replaced_counts(total_heads, self.sweep_fractions)

    def sizes(self, model_name: str, task: str | None = None) -> dict:
        return {name: self.size(model_name, name, task) for name in SIZE_FIELDS}


PROFILES = {
    "smoke": Profile("smoke", ("minilm-l3",), ("sst2", "mrpc", "ner"), seeds=(42, 43), average_examples=64,
                     precision="fp32",
                     train_examples=64, dev_examples=64, rank_examples=32, epochs=2, length_override=32,
                     curve_models=("minilm-l3",), curve_tasks=("sst2",), curve_sizes=(16, 64),
                     compare_rankings=("input_dependence", "random"), compare_models=("minilm-l3",),
                     random_orders=2, ranking_stability=True),
    # One protocol for every model (README, "The cpu profile's settings"): per task the same training examples
    # (4,000 where the split has them, MRPC's whole 3,668), the same dev examples (whole splits; MNLI matched:
    # one fixed subset of 3,000), the same L (the shortest of 64 and 128 that truncates at most 3% of them,
    # truncation.csv), the same probe schedule and the same sweep (no head, half of them, all of them). The
    # constant matrices average the probe's own training examples, so their pass also gives the baseline's
    # features. Probe: 5 epochs at lr 2e-4 decaying linearly to 0, so that the dev curve ends flat (the run
    # publishes the check, convergence.csv). Heads ranked by input dependence (a single pass, no seed).
    "cpu": Profile("cpu", ("minilm-l3", "minilm-l6", "mpnet-base"), ("cola", "sst2", "mrpc", "mnli", "ner", "pos"),
                   seeds=(42, 43, 44), average_examples=4000, train_examples=4000, dev_examples=None,
                   task_sizes={"mnli": {"dev_examples": 3000}}, sweep_fractions=(0, 1 / 2, 1),
                   rank_examples=500, rank_epochs=3, gate_lr=1e-2, epochs=5, probe_lr=2e-4, lr_schedule="linear",
                   task_lengths={"cola": 64, "sst2": 128, "mrpc": 128, "mnli": 128, "ner": 64, "pos": 64},
                   precision="auto", ranking="input_dependence"),
    # PROFILES["cpu-robustness"] (below): the cpu protocol, plus what tests whether its verdicts depend on the head
    # ranking or on the probe's training size
    # full splits on a GPU with the Hub: hidden states of whole splits do not fit in memory, so the backbone
    # streams (eval mode) for every batch; gates train for as long as the probe. No learning curve (the cpu profile
    # has one)
    "paper": Profile("paper", ("bert-base-uncased", "bert-large-uncased", "roberta-base", "roberta-large",
                               "microsoft/deberta-base", "microsoft/deberta-large"),
                     ("cola", "sst2", "mrpc", "mnli", "ner", "pos"), seeds=(42, 43, 44), epochs=15, rank_epochs=15,
                     protocol="streaming", precision="fp32",
                     # SST-2 at 128, not the single-sentence default 64, which cuts 22% of its dev sentences (the
                     # uncased BERT vocabulary, truncation.csv); the other defaults cut at most 3%
                     task_lengths={"sst2": 128}),
    # the paper profile's path on a machine without a GPU or the Hub (`make figures PROFILE=paper-dry
    # EXECUTOR=local`, and a test): its protocol (streaming probe, fp32, the gates, whole splits: no size is set)
    # on tiny randomly initialised BERT, RoBERTa and DeBERTa v1 built into the local models folder and loaded from
    # there as Hub ids are, on the two smallest paper tasks. Cheaper only where the path stays the same: L = 32,
    # two seeds, one epoch. Its numbers mean nothing.
    "paper-dry": Profile("paper-dry", tuple(TINY_RANDOM), ("cola", "mrpc"), seeds=(42, 43), epochs=1, rank_epochs=1,
                         protocol="streaming", precision="fp32", length_override=32),
}


# The cpu protocol (every setting the same, so its Table 1 cells are the same computation: a run folder that holds
# a cpu run's steps reuses them) plus two checks of its verdicts, each on every model: the heads ranked four ways
# (gates, input dependence, variance, one random order) on every cell, with the half-heads point under each
# (notebook 6), and learning curves at 1,000, 2,000 and 4,000 training examples on three tasks (notebook 5).
# Longer than the cpu run on 2 cores: a run that resumes.
PROFILES["cpu-robustness"] = replace(
    PROFILES["cpu"], name="cpu-robustness", compare_rankings=("gates", "variance", "random"),
    compare_models=PROFILES["cpu"].models, random_orders=1,
    curve_models=PROFILES["cpu"].models, curve_tasks=("cola", "mnli", "ner"), curve_sizes=(1000, 2000, 4000))


def get_profile(name: str, models=None, tasks=None, ranking: str | None = None, passes: str | None = None) -> Profile:
    """A profile by name, optionally narrowed to some models / tasks (comma-separated or lists), optionally with
    another head ranking for its partial sweep (``RANKINGS``) or other backbone passes (``packing.PASSES``)."""
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}")
    profile = PROFILES[name]
    if passes:
        profile = replace(profile, passes=check_passes(passes))
    if ranking:  # the gates, which notebook 6 compares every ranking with, take the place of the new main ranking
        compared = tuple("gates" if m == ranking else m for m in profile.compare_rankings)
        if profile.compare_rankings and ranking != "gates" and "gates" not in compared:
            compared = ("gates",) + compared
        profile = replace(profile, ranking=ranking, compare_rankings=compared)
    split = lambda v: tuple(v.split(",")) if isinstance(v, str) else tuple(v)  # noqa: E731
    if models:
        profile = replace(profile, models=split(models))
    if tasks:
        for t in split(tasks):
            get_task(t)
        profile = replace(profile, tasks=split(tasks))
    if models or tasks:  # the learning curve and the ranking comparison cover what the narrowed run covers
        curve = tuple(m for m in profile.curve_models if m in profile.models)
        profile = replace(profile, curve_models=curve,
                          curve_tasks=tuple(t for t in profile.curve_tasks if curve and t in profile.tasks),
                          compare_models=tuple(m for m in profile.compare_models if m in profile.models))
    return profile


@lru_cache(maxsize=2)
def cached_model(name: str):
    return load_model(name)


# precisions decided by the process that submitted this one's job (``cell_steps``): a job on another machine uses
# the run's decision, not its own, so that the notebooks find the steps it made
DECIDED_PRECISIONS: dict[str, str] = {}


def asked_precision(profile: Profile, model_name: str) -> str:
    """The precision the profile asks for `model_name`: its own, or with "auto" the faster on this machine
    (``precision_choice``)."""
    return profile.precision if profile.precision != "auto" else precision_choice(profile, model_name)["choice"]


def precision_of(profile: Profile, model_name: str) -> str:
    """The backbone precision of `model_name`'s passes in this profile: what it asks for (``asked_precision``),
    fp32 where the model cannot run in that (``precision_fallback``); in a job, what the submitting process
    decided (``DECIDED_PRECISIONS``)."""
    if model_name in DECIDED_PRECISIONS:
        return DECIDED_PRECISIONS[model_name]
    wanted = asked_precision(profile, model_name)
    return "fp32" if precision_fallback(model_name, wanted) else wanted


@lru_cache(maxsize=None)
def precision_fallback(model_name: str, precision: str) -> str | None:
    """Why `model_name` falls back to fp32 from `precision` on its device (``device.precision_problem``), or
    None when it runs in it; said once in the log, and recorded in run.json."""
    if precision == "fp32":
        return None
    problem = precision_problem(cached_model(model_name)[0], precision)
    if problem:
        log.warning(f"{model_name} cannot run in {precision} on {model_device(cached_model(model_name)[0]).type} "
                    f"({problem}): its passes run in fp32")
    return problem


def precision_record(profile: Profile) -> dict:
    """What run.json says about precision: per model, the precision asked for (the profile's, or auto's choice),
    the one its passes use, and why they differ where they do."""
    record = {}
    for model_name in profile.models:
        wanted = asked_precision(profile, model_name)
        record[model_name] = {"asked": wanted, "used": precision_of(profile, model_name)}
        if precision_fallback(model_name, wanted):
            record[model_name]["fallback"] = precision_fallback(model_name, wanted)
    return record


# the rows of the products timed for precision="auto": a feature pass's batch, 32 examples of L = 128. Fixed, so
# that a model's choice on a machine does not depend on which tasks a run covers
PRECISION_ROWS = 32 * 128


def precision_choice(profile: Profile, model_name: str) -> dict:
    """``device.auto_precision`` for a model: its own matrix products at a feature pass's batch
    (``PRECISION_ROWS``), timed once per machine and cached in the model cache folder (precision.json), so every
    step and notebook of a run reads the same choice. The probe's products follow the same choice."""
    return _precision_choice(model_name, PRECISION_ROWS)


@lru_cache(maxsize=None)
def _precision_choice(model_name: str, rows: int) -> dict:
    model, _ = cached_model(model_name)
    info = describe(model)
    intermediate = getattr(model.config, "intermediate_size", None) or getattr(model.config, "hidden_dim")
    return auto_precision(info["hidden"], intermediate, rows, model_device(model),
                          cache_file=cache_dir() / "precision.json")


def probe_config(profile: Profile, model_name: str, **changes) -> ProbeConfig:
    """How the profile trains a probe on `model_name`: its epochs, lr, protocol and gate lr (for the gates'
    ranking, whose probe runs inside the backbone's pass); the backbone's precision (``precision_of``), which the
    probe's own products follow (the same rule: bf16 only where this machine's products are faster in it)."""
    precision = precision_of(profile, model_name)
    return replace(ProbeConfig(epochs=profile.epochs, lr=profile.probe_lr, lr_schedule=profile.lr_schedule,
                               protocol=profile.protocol,
                               precision=precision, probe_precision=precision if precision in PROBE_DTYPES else "fp32",
                               gate_lr=profile.gate_lr, passes=profile.passes), **changes)


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
    return _fingerprint({"step": "averages", "model": model_name, "task": task, "data": data.checksum,
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
    if path.exists():
        found = AttentionAverages.load(path, model=model, length=length)
        if found.meta.get("key") == key:
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
    result.meta.update(key=key, seconds=round(time.time() - start, 2), data_note=data.note)
    result.save(path)
    return result


def baseline_features_path(run_dir: Path, model_name: str, task: str, length: int) -> Path:
    """The baseline's training features, saved by the averages pass until the k = 0 probes have used them."""
    return Path(run_dir) / "features" / f"{_slug(model_name, task, 'k0', 'train', f'L{length}')}.pt"


def baseline_features_meta(model_name: str, data: TaskSplit, length: int, precision: str, passes: str) -> dict:
    return {"model": model_name, "data": data.checksum, "examples": len(data), "L": length, "precision": precision,
            "passes": passes}


def _slug(*parts) -> str:
    return "__".join(str(p).replace("/", "--") for p in parts)


def _fingerprint(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


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
    config = probe_config(profile, model_name)
    key = _fingerprint({"averages": avg.meta["key"], "examples": len(data), "data": data.checksum,
                        "epochs": profile.rank_epochs, "precision": config.precision, "lr": config.lr,
                        "gate_lr": profile.gate_lr, "seed": seed})  # the gates' probe runs in the backbone's pass
    variant = ((f"seed{seed}",) if seed != profile.seeds[0] else ()) + ((f"subset{subset}",) if subset else ())
    path = Path(run_dir) / "ranking" / f"{_slug(model_name, task, *variant)}.json"
    found = _read_json(path)
    if found and found.get("fingerprint") == key:
        return {**found, "method": "gates"}
    model, _ = cached_model(model_name)
    result = rank_heads_by_gates(model, get_task(task), encoded(model_name, data, profile.length(task)), avg,
                                 epochs=profile.rank_epochs, seed=seed, config=config,
                                 progress=progress_enabled())
    result.update(fingerprint=key, model=model_name, task=task, examples=len(data), data=data.checksum,
                  epochs=profile.rank_epochs, gate_lr=profile.gate_lr, seed=seed, subset=subset, method="gates")
    write_json(path, result)
    return result


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
    key = _fingerprint({"averages": avg.meta["key"], "examples": len(data), "data": data.checksum,
                        "scores": SCORES, "definition": SCORE_DEFINITION})
    variant = (f"subset{subset}",) if subset else ()
    path = Path(run_dir) / "ranking" / f"{_slug(model_name, task, 'scores', *variant)}.json"
    found = _read_json(path)
    if found and found.get("fingerprint") == key:
        return found
    model, _ = cached_model(model_name)
    start = time.time()
    scores = head_scores(model, avg, backbone_batches(encoded(model_name, data, profile.length(task)), 32,
                                                      profile.passes))
    result = {**{name: scores[name].tolist() for name in SCORES}, "seconds": round(time.time() - start, 2),
              "method": "scores", "fingerprint": key, "model": model_name, "task": task, "examples": len(data),
              "data": data.checksum, "subset": subset}
    write_json(path, result)
    return result


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
    common = {"model": model_name, "task": task, "total_heads": total, "train_examples": len(train_data),
              "dev_examples": len(dev_data), "L": length, "data_note": train_data.note}
    train = dev = None
    results = []

    def path(k, predictor, seed):
        return Path(run_dir) / folder / f"{_slug(model_name, task, *label, f'k{k}', *PREDICTOR_FILES[predictor], f'seed{seed}')}.json"

    for k in counts:
        heads = replaced_heads(k, total, ranking)
        probes = {"probe": config}
        if k == 0:
            probes["attention_free"] = replace(config, levels="embeddings")
        keys = {predictor: _fingerprint({"averages": avg.meta["key"], "heads": heads, "config": asdict(c), **data_key})
                for predictor, c in probes.items()}
        done = {(p, seed): _read_json(path(k, p, seed)) for p in probes for seed in seeds}
        missing = [(p, seed) for (p, seed), r in done.items()
                   if not r or r.get("fingerprint") != keys[p] or "dev_statistics" not in r]
        if missing or (k == 0 and _trivial_missing(path, profile, data_key)):
            if train is None:
                train, dev = encoded(model_name, train_data, length), encoded(model_name, dev_data, length)
        if k == 0 and _trivial_missing(path, profile, data_key):
            metrics, statistics = trivial_reference(train_data, dev_data, dev)
            for seed in profile.seeds:  # seedless: the same values under every seed, so summaries stay uniform
                write_json(path(0, "trivial", seed), {**common, "replaced_heads": 0, "heads": [], "seed": seed,
                                                      "ranking": None,
                                                      "predictor": "trivial", "metrics": metrics, "curve": [],
                                                      "probe_seconds": 0.0, "feature_seconds": 0.0,
                                                      "dev_statistics": _listed(statistics),
                                                      "fingerprint": _fingerprint(data_key)})
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
                done[predictor, seed] = {**common, "replaced_heads": k, "heads": heads, "seed": seed,
                                         "ranking": ranking_name if 0 < k < total else None,
                                         "predictor": predictor, "metrics": r.metrics, "curve": r.curve,
                                         "probe_seconds": r.seconds, "feature_seconds": feature_seconds,
                                         "protocol": config.protocol, "dev_statistics": _listed(r.dev_statistics),
                                         "prediction_share": r.prediction_share,
                                         "fingerprint": keys[predictor]}
                write_json(path(k, predictor, seed), done[predictor, seed])
            del features
        if k == 0:  # the baseline's features on disk are used up
            baseline_features_path(run_dir, model_name, task, length).unlink(missing_ok=True)
        results.extend(done["probe", seed] for seed in seeds)
    return results


# file name parts of each predictor's results (the paper's probe keeps the names it always had)
PREDICTOR_FILES = {"probe": (), "attention_free": ("embeddings",), "trivial": ("trivial",)}


def _trivial_missing(path, profile: Profile, data_key: dict) -> bool:
    found = [_read_json(path(0, "trivial", seed)) or {} for seed in profile.seeds]
    return any(r.get("fingerprint") != _fingerprint(data_key) or "dev_statistics" not in r for r in found)


def _listed(statistics):
    """Per-example statistics (numpy, or None for regression) as they are stored in a record."""
    return None if statistics is None else statistics.tolist()


def ranking_comparison(run_dir: Path, profile: Profile, model_name: str, task: str) -> list[dict]:
    """The partial sweep (k = 1/2, 7/8, 15/16 of the heads) under every ranking of ``profile.compare_rankings``
    other than the profile's own (which the main sweep already ran): deterministic rankings with every seed,
    random orders ("random0", "random1", ...) with one seed each (the profile's seeds in turn). Cached in
    <run>/ranking_sweep/."""
    info = describe(cached_model(model_name)[0])
    counts = profile.sweep_counts(model_name, info["layers"] * info["heads"])[1:-1]
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


def ranking_comparison_table(run_dir: Path, profile: Profile) -> pd.DataFrame:
    """Headline metric of every sweep point of the compared models, under every ranking the profile compares:
    the main sweep of the profile's seeds (k = 0 and all heads with ranking "none", shared by every ranking) and
    what ``ranking_comparison`` returns (computed where missing; nothing left over from other settings counts).
    Columns: model, task, ranking, seed, replaced_heads, dynamic_heads, total_heads, metric, value."""
    rows = []
    main = [r for r in _main_records(run_dir, profile) if r.get("predictor", "probe") == "probe"]
    for model_name in profile.compare_models:
        for task in profile.tasks:
            compared = ranking_comparison(run_dir, profile, model_name, task)
            for r in [m for m in main if m["model"] == model_name and m["task"] == task] + compared:
                k, total = r["replaced_heads"], r["total_heads"]
                metric = get_task(task).metric
                rows.append({"model": model_name, "task": task,
                             "ranking": (r.get("ranking") or "gates") if 0 < k < total else "none", "seed": r["seed"],
                             "replaced_heads": k, "dynamic_heads": total - k, "total_heads": total,
                             "metric": metric, "value": r["metrics"][metric]})
    columns = ["model", "task", "ranking", "seed", "replaced_heads", "dynamic_heads", "total_heads", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def ranking_stability_table(run_dir: Path, profile: Profile) -> pd.DataFrame:
    """For every (model, task): how the profile's ranking agrees with itself (Spearman correlation, overlap of
    the first halves) when made from a disjoint training subset (the `rank_examples` after the usual ones) and,
    for the gates, when trained with another seed (the profile's second: another init and data order; a score
    has no seed). The gates also on `compare_models` when they are compared but not the profile's ranking. A
    random order has no stability to measure. Columns: ranking, model, task, compared_with, spearman,
    first_half_overlap, examples, seconds (what the other ranking took)."""
    rows = []
    for model_name in profile.models:
        for method, variants in stability_variants(profile, model_name).items():
            for task in profile.tasks:
                main = head_ranking(run_dir, profile, model_name, task, method)
                for name, change in variants.items():
                    other = head_ranking(run_dir, profile, model_name, task, method, **change)
                    rows.append({"ranking": method, "model": model_name, "task": task, "compared_with": name,
                                 **ranking_agreement(main["ranking"], other["ranking"]),
                                 "examples": other["examples"], "seconds": round(other["seconds"], 2)})
    columns = ["ranking", "model", "task", "compared_with", "spearman", "first_half_overlap", "examples", "seconds"]
    return pd.DataFrame(rows, columns=columns)


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


def ranking_agreement_table(run_dir: Path, profile: Profile) -> pd.DataFrame:
    """For every (model, task) of the profile: how each ranking the profile compares (``compare_rankings``;
    random: its first order) agrees with the gates (Spearman correlation, overlap of the first halves) and what it
    cost (seconds; the gates' own cost beside it). Empty when the profile compares none."""
    rows = []
    for model_name in profile.models:
        for task in profile.tasks:
            if not profile.compare_rankings:
                break
            gates = head_ranking(run_dir, profile, model_name, task, "gates")
            for method in (m for m in profile.compare_rankings if m != "gates"):
                other = head_ranking(run_dir, profile, model_name, task, method)
                rows.append({"model": model_name, "task": task, "ranking": "random0" if method == "random" else method,
                             **ranking_agreement(gates["ranking"], other["ranking"]),
                             "seconds": round(other["seconds"], 2), "gates_seconds": round(gates["seconds"], 2)})
    return pd.DataFrame(rows, columns=["model", "task", "ranking", "spearman", "first_half_overlap", "seconds",
                                       "gates_seconds"])


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
        return Path(run_dir) / "curve" / f"{_slug(model_name, task, f'n{n}', predictor, f'k{k}', f'seed{seed}')}.json"

    for heads_k in (0, total):
        features = None
        for n in sizes:
            data = pool.rows(order[:n])
            common = {"model": model_name, "task": task, "train_examples": n, "dev_examples": len(dev_data), "L": length,
                      "total_heads": total, "data_note": data.note}
            data_key = {"averages": avg.meta["key"], "train": [data.checksum, n], "dev": [dev_data.checksum, len(dev_data)],
                        "L": length}
            for (predictor, k), cfg in runs.items():
                if k != heads_k:
                    continue
                key = _fingerprint({**data_key, "k": k, "config": asdict(cfg)})
                for seed in profile.curve_seeds:
                    found = _read_json(path(n, predictor, k, seed))
                    if found and found.get("fingerprint") == key:
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
                    record = {**common, "predictor": predictor, "replaced_heads": k, "seed": seed,
                              "metrics": r.metrics, "curve": r.curve, "probe_seconds": r.seconds,
                              "prediction_share": r.prediction_share, "feature_seconds": feature_seconds,
                              "fingerprint": key}
                    write_json(path(n, predictor, k, seed), record)
                    records.append(record)
            if heads_k == 0:  # the trivial predictor of this training subset (no backbone)
                key = _fingerprint({**data_key, "predictor": "trivial"})
                found = _read_json(path(n, "trivial", 0, 0))
                if not (found and found.get("fingerprint") == key):
                    if dev is None:
                        dev = encoded(model_name, dev_data, length)
                    found = {**common, "predictor": "trivial", "replaced_heads": 0, "seed": None, "curve": [],
                             "metrics": trivial_metrics(data, dev_data, dev), "probe_seconds": 0.0,
                             "feature_seconds": 0.0, "fingerprint": key}
                    write_json(path(n, "trivial", 0, 0), found)
                records.append(found)
        del features
    return records


def cell_steps(run_dir: Path, profile: Profile, model_name: str, task: str, precision: str | None = None) -> dict:
    """Every step of one (model, task) cell, in the order the notebooks need them: averages (notebook 1) ->
    baseline and full PAPA (2) -> the head ranking and the sweep (3) -> the ranking's stability and the compared
    rankings (6) -> the learning curve where the cell has one (5). Each step is cached, so the notebooks find
    them done; this is what a job of ``executor.run_cells`` runs, with `precision` as the submitting process
    decided it (``precision_of`` there). Returns where it ran: {"device": the model's, "precision": its passes'}."""
    if precision is not None:
        DECIDED_PRECISIONS[model_name] = precision
    model, _ = cached_model(model_name)
    info = describe(model)
    total = info["layers"] * info["heads"]
    average_attention(run_dir, profile, model_name, task)
    probe_sweep(run_dir, profile, model_name, task, [0, total])
    ranking = head_ranking(run_dir, profile, model_name, task)
    probe_sweep(run_dir, profile, model_name, task, profile.sweep_counts(model_name, total), ranking["ranking"])
    for method, variants in stability_variants(profile, model_name).items():
        for change in variants.values():
            head_ranking(run_dir, profile, model_name, task, method, **change)
    if profile.compare_rankings:
        for method in {"gates", *profile.compare_rankings}:
            head_ranking(run_dir, profile, model_name, task, method)
        if model_name in profile.compare_models:
            ranking_comparison(run_dir, profile, model_name, task)
    if model_name in profile.curve_models and task in profile.curve_tasks:
        learning_curve(run_dir, profile, model_name, task)
    return {"device": str(model_device(model)), "precision": precision_of(profile, model_name)}


def cell_passes(profile: Profile, model_name: str, task: str, total_heads: int, train_split: int,
                dev_split: int) -> dict:
    """How many examples one cell's steps (``cell_steps``) put through the backbone, for a profile with the
    streaming protocol and the gates' ranking (the paper's): the averages pass; for each sweep point (and the
    attention-free probe at k = 0), every seed and epoch, the training and dev examples; the gates, forward and
    backward, for each ranking epoch. `train_split` / `dev_split`: the whole splits' sizes (the profile's sizes
    cap them). Returns {"forward": examples, "forward_backward": examples}; ``bench.py --only paper_cost`` checks
    it against a counted run."""
    if profile.protocol != "streaming" or profile.ranking != "gates" or profile.compare_rankings:
        raise ValueError(f"cell_passes counts the paper's path (streaming, gates, no compared rankings); profile "
                         f"{profile.name} has protocol {profile.protocol!r}, ranking {profile.ranking!r}")

    def size(name, whole):
        n = profile.size(model_name, name, task)
        return whole if n is None else min(n, whole)

    probes = len(profile.sweep_counts(model_name, total_heads)) + 1
    rankings = 1 + (2 if profile.ranking_stability else 0)  # another seed and a disjoint subset
    return {"forward": size("average_examples", train_split) + probes * len(profile.seeds) * profile.epochs
            * (size("train_examples", train_split) + size("dev_examples", dev_split)),
            "forward_backward": rankings * profile.rank_epochs * size("rank_examples", train_split)}


@contextmanager
def counting_backbone_examples(model):
    """Count the examples every call of `model` gets, inside the block: {"forward": without gradients,
    "forward_backward": with them (the gates)}; what ``cell_passes`` predicts."""
    counted = {"forward": 0, "forward_backward": 0}

    def count(module, args, kwargs):
        counted["forward_backward" if torch.is_grad_enabled() else "forward"] += kwargs["input_ids"].shape[0]

    hook = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        yield counted
    finally:
        hook.remove()


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


CONVERGED_GAIN = 0.5  # metric points: a dev curve whose last epoch gains less than this has ended flat


def convergence_table(records: list[dict], last: int = 3) -> pd.DataFrame:
    """Whether each probe's dev curve ended flat: per model x task x predictor x replaced heads, the headline
    metric's mean over seeds at each of the `last` epochs (columns "epoch_<n>"), the last epoch's gain over the one
    before, and `converged`: that gain is below ``CONVERGED_GAIN``. The final epoch is what the results report."""
    rows = []
    for r in records:
        metric = get_task(r["task"]).metric
        for point in r.get("curve") or []:
            rows.append({"model": r["model"], "task": r["task"], "predictor": r.get("predictor", "probe"),
                         "replaced_heads": r["replaced_heads"], "total_heads": r["total_heads"], "metric": metric,
                         "seed": r["seed"], "epoch": point["epoch"], "value": point[metric]})
    columns = ["model", "task", "predictor", "replaced_heads", "total_heads", "metric"]
    if not rows:
        return pd.DataFrame(columns=columns + ["seeds", "last_gain", "converged"])
    frame = pd.DataFrame(rows)
    means = frame.pivot_table(index=columns, columns="epoch", values="value", aggfunc="mean")
    seeds = frame.groupby(columns)["seed"].nunique()
    epochs = sorted(means.columns)[-last:]
    table = means[epochs].rename(columns=lambda e: f"epoch_{e}")
    table["seeds"] = seeds
    table["last_gain"] = (means[epochs[-1]] - means[epochs[-2]]) if len(epochs) > 1 else np.nan
    table["converged"] = table["last_gain"] < CONVERGED_GAIN
    return table.reset_index()


def _main_records(run_dir: Path, profile: Profile) -> list[dict]:
    """The main sweep's records of the profile's models, tasks, seeds and shares of heads (a point left in the
    folder by a sweep with other shares does not count)."""
    return [r for path in sorted((Path(run_dir) / "probe").glob("*.json")) if (r := _read_json(path))
            and r["model"] in profile.models and r["task"] in profile.tasks and r["seed"] in profile.seeds
            and r["replaced_heads"] in profile.sweep_counts(r["model"], r["total_heads"])]


def all_results(run_dir: Path, profile: Profile) -> pd.DataFrame:
    """Every cached probe result of the profile's models and tasks, as a tidy table."""
    return results_table(_main_records(run_dir, profile))


def runs_root() -> Path:
    """The folder that holds run folders: $PAPA_RUNS_DIR, else runs/ in the checkout (git-ignored)."""
    return Path(os.environ.get("PAPA_RUNS_DIR") or ROOT / "runs").expanduser()


def run_scope(profile: Profile) -> dict:
    """What a run covers; recorded in its run.json and compared before anything overwrites its results."""
    return {"profile": profile.name, "models": list(profile.models), "tasks": list(profile.tasks),
            "seeds": list(profile.seeds), "ranking": profile.ranking, "passes": profile.passes}


def run_name(profile: Profile) -> str:
    """`cpu` for the profile's whole grid; a narrowed run names what it covers, e.g. `cpu__minilm-l3__sst2`,
    so it gets a folder of its own and never touches the results of the whole grid; so does a run that ranks
    the heads another way than its profile (`cpu__ranked-by-input_dependence`)."""
    full = PROFILES[profile.name]
    ranked = () if profile.ranking == full.ranking else (f"ranked-by-{profile.ranking}",)
    ranked += () if profile.passes == full.passes else (f"{profile.passes}-passes",)
    if set(profile.models) == set(full.models) and set(profile.tasks) == set(full.tasks):
        return _slug(profile.name, *ranked)
    return _slug(profile.name, "-".join(profile.models), "-".join(profile.tasks), *ranked)


def open_run(run_dir, profile: Profile) -> Path:
    """The run folder for `profile` (default: ``runs_root() / run_name(profile)``), claimed for its scope: a
    folder that holds a run this one does not cover is refused (``claim_run_folder``)."""
    run_dir = Path(run_dir) if run_dir else runs_root() / run_name(profile)
    return claim_run_folder(run_dir, run_scope(profile))


def results_dir(run_dir: Path) -> Path:
    """Where a run's tables and claims go: <run>/results. `make publish` copies them to results/<profile>/."""
    path = Path(run_dir) / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_table(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def write_results(run_dir: Path, profile: Profile) -> pd.DataFrame:
    """Collect every cached probe result into <run>/results/probe_results.csv (tidy), whether each dev curve ended
    flat into convergence.csv (``convergence_table``) and their per-example dev
    statistics into <run>/results/dev_statistics.npz (``analysis.statistics_key`` -> counts; for the paired
    bootstrap over dev examples); return the table."""
    records = _main_records(run_dir, profile)
    table = results_table(records)
    save_table(table, results_dir(run_dir) / "probe_results.csv")
    save_table(convergence_table(records), results_dir(run_dir) / "convergence.csv")
    statistics = {statistics_key(r["model"], r["task"], r.get("predictor", "probe"), r["replaced_heads"], r["seed"]):
                  np.asarray(r["dev_statistics"], dtype=np.int32) for r in records if r.get("dev_statistics")}
    with atomic_path(results_dir(run_dir) / STATISTICS_FILE) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **statistics)
    return table


STATISTICS_FILE = "dev_statistics.npz"


def read_statistics(folder: Path) -> dict:
    """The per-example dev statistics saved beside a results table (``write_results``); {} when there are none
    (results made before they were kept: bootstraps then resample seeds only)."""
    path = Path(folder) / STATISTICS_FILE
    if not path.exists():
        return {}
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


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
        r = _read_json(path) or {}
        out["head_scores" if r.get("method") == "scores" else "ranking"] += r.get("seconds", 0)
    for folder, probes, passes in (("probe", "probe_training", "feature_passes"),
                                   ("ranking_sweep", "ranking_comparison", "ranking_comparison")):
        seen = set()
        for path in (run_dir / folder).glob("*.json"):
            r = _read_json(path) or {}
            out[probes] += r.get("probe_seconds", 0)
            key = (r.get("model"), r.get("task"), r.get("ranking"), r.get("replaced_heads"), r.get("feature_seconds"))
            if key not in seen:  # one feature pass per configuration, recorded with each of its seeds and predictors
                seen.add(key)
                out[passes] += r.get("feature_seconds", 0)
    for path in (run_dir / "curve").glob("*.json"):  # a pass's time is recorded once, with the probe that ran it
        r = _read_json(path) or {}
        out["learning_curve"] += r.get("probe_seconds", 0) + r.get("feature_seconds", 0)
    return {k: round(v, 1) for k, v in out.items()}


def example_attention(model_name: str, task: str, length: int, index: int = 0):
    """Attention [layers, heads, L, L] of one validation example in the PAPA layout, on pairs of real tokens
    (other entries 0), and its L tokens ("" for padding)."""
    import torch

    model, tokenizer = cached_model(model_name)
    e = encode(load_task(task, "validation").head(index + 1), tokenizer, length)
    with torch.no_grad():
        out = model(**inputs_on(e.model_inputs(slice(index, index + 1)), model_device(model)), output_attentions=True)
    mask = e.attention_mask[index]
    tokens = [t if m else "" for t, m in zip(tokenizer.convert_ids_to_tokens(e.input_ids[index].tolist()),
                                             mask.tolist())]
    pairs = (mask[:, None] * mask[None, :]).float()  # shown like the averages: real-token pairs only
    return torch.stack([a[0].cpu() for a in out.attentions]) * pairs, tokens


def figures_dir(run_dir: Path) -> Path:
    """Where a run's figures go: <run>/figures. `make publish` copies them to figures/<profile>/."""
    path = Path(run_dir) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


# GiB of baseline features that notebook 1 may leave on disk for notebook 2 (``average_attention``): the features of
# the cells beyond it are computed again by their k = 0 probes, one more pass over the training examples
FEATURE_CACHE_GB = 8.0


def features_gb(model, data: Encoded) -> float:
    """At most how many GiB the fp16 features of `data`'s real tokens take (every hidden-state level)."""
    info = describe(model)
    return int(data.attention_mask.sum()) * (info["layers"] + 1) * info["hidden"] * 2 / 1024 ** 3


def feature_cache_gb(run_dir: Path) -> float:
    """Size on disk of the saved features in the run folder."""
    return round(sum(p.stat().st_size for p in (Path(run_dir) / "features").glob("*")) / 1024 ** 3, 3)


def run_notebooks(profile: Profile, run_dir: Path | None = None, notebooks=None, executor: str = "inprocess",
                  cells_seconds: float | None = None) -> Path:
    """Execute the notebooks in order with papermill into the run folder (``open_run``): executed copies,
    results and figures all go there. With an `executor` other than "inprocess", the cells' steps were run as
    jobs first (``executor.run_cells``, which took `cells_seconds`) and the notebooks find them done. Returns the
    run folder."""
    import papermill

    absolute_data_dir()
    run_dir = open_run(run_dir, profile).resolve()
    params = {"profile": profile.name, "models": ",".join(profile.models), "tasks": ",".join(profile.tasks),
              "ranking": profile.ranking, "passes": profile.passes, "run_dir": str(run_dir)}
    data = os.environ.get("PAPA_DATA_DIR")
    recorded = {"scope": run_scope(profile), "profile": asdict(profile), "run_dir": repo_relative(run_dir),
                "data_dir": repo_relative(data) if data else "Hugging Face Hub", "executor": executor}
    if profile.precision == "auto":  # resolved once, before any step: what each model's passes and probes run in,
        # and the timings behind the choice (every notebook reads the same cached measurement)
        recorded["precision_choice"] = {m: precision_choice(profile, m) for m in profile.models}
    recorded["precision"] = precision_record(profile)  # and where a model falls back to fp32 (DeBERTa v1 in bf16)
    write_json(run_dir / "run.json", {**recorded, **environment()})  # no wall time yet: not finished
    started, seconds, cache_gb = time.time(), {}, []
    for name in notebooks or NOTEBOOKS:
        source = ROOT / "notebooks" / f"{name}.ipynb"
        start = time.time()
        papermill.execute_notebook(str(source), str(run_dir / source.name), parameters=params,
                                   cwd=str(ROOT / "notebooks"), progress_bar=progress_enabled())
        seconds[name] = round(time.time() - start, 1)
        cache_gb.append(feature_cache_gb(run_dir))  # largest right after notebook 1, which fills it
        print(f"{name}: {seconds[name]:.0f} s", flush=True)
    if executor != "inprocess":  # where and how long each cell's job ran, and how long this run waited for them
        recorded.update(cells=cell_records(run_dir), cells_wall_seconds=cells_seconds)
    meta = {**recorded, "notebooks": list(seconds), "notebook_seconds": seconds,
            "wall_seconds": round(time.time() - started, 1), "step_seconds": timing(run_dir, profile),
            "peak_memory_gb": peak_memory_gb(), "feature_cache_gb": {"largest": max(cache_gb, default=0.0),
                                                                     "at_the_end": feature_cache_gb(run_dir)},
            **environment()}
    write_json(run_dir / "run.json", meta)
    return run_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", help=f"one of {', '.join(PROFILES)}")
    parser.add_argument("--models", help="comma-separated subset of the profile's models")
    parser.add_argument("--tasks", help="comma-separated subset of the profile's tasks")
    parser.add_argument("--run-dir", help="default runs/<run name>: runs/<profile> for the whole grid, "
                                          "runs/<profile>__<models>__<tasks> when narrowed")
    parser.add_argument("--ranking", help=f"how the partial sweep orders the heads: {', '.join(RANKINGS)} "
                                          "(default: the profile's)")
    parser.add_argument("--passes", help="backbone passes: packed (real tokens only, the default) or padded (the whole "
                                         "layout, the reference)")
    parser.add_argument("--notebooks", help="comma-separated subset, e.g. 01_average_attention")
    parser.add_argument("--executor", default="inprocess",
                        help=f"how each (model, task) cell's steps run: {', '.join(EXECUTORS)} (default inprocess: "
                             f"inside the notebooks; local: separate processes; slurm: Slurm jobs)")
    parser.add_argument("--workers", type=int, default=2, help="local executor: cells run at the same time")
    parser.add_argument("--slurm-config", help="YAML file of Slurm options (partition, gpus_per_node, "
                                               "cpus_per_task, mem_gb, timeout_min, account, qos, ...)")
    parser.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                        help="one Slurm option, over the file's (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        profile = get_profile(args.profile, args.models, args.tasks, args.ranking, args.passes)
        executor = check_executor(args.executor)
        options = slurm_options(args.slurm_config, args.slurm) if executor == "slurm" else {}
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}")
    except KeyError as e:
        sys.exit(str(e.args[0]))
    except (ValueError, ExecutorError) as e:
        sys.exit(str(e))
    start = time.time()
    try:
        run_dir = open_run(args.run_dir, profile).resolve()
        absolute_data_dir()
        cells_start = time.time()
        if executor != "inprocess":  # decided here, once, for every job and notebook of the run
            run_cells(cell_steps, run_dir, profile, executor, args.workers, options,
                      precisions={m: precision_of(profile, m) for m in profile.models})
        run_dir = run_notebooks(profile, run_dir, args.notebooks.split(",") if args.notebooks else None, executor,
                                round(time.time() - cells_start, 1))
    except (RunScopeError, CellsFailed, ExecutorError) as e:  # (ExecutorError: e.g. GPUs local jobs cannot be given)
        sys.exit(str(e))
    print(f"profile {profile.name}: done in {time.time() - start:.0f} s; results and figures in "
          f"{repo_relative(run_dir)}/; publish them as the README's with `make publish RUN_DIR={repo_relative(run_dir)}`",
          flush=True)


if __name__ == "__main__":  # run the module's own main, so that what jobs unpickle is papa_utils.pipeline's
    from papa_utils.pipeline import main as module_main

    module_main()
