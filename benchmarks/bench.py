"""Speed of the PAPA pipeline on this machine: every number is a ratio measured side by side in ONE run.

    make bench            # or: python benchmarks/bench.py [--quick] [--only probe_settings,precision]

Prints Markdown tables (forward passes, probe protocol, bf16 backbone, probe settings with bf16 products,
head-ranking stability and cost, auto precision, the paper profile's cost per cell, packed vs padded passes) and
writes them, with the raw timings, to results/bench.md and
results/bench.json (results/bench_<sections>.* with --only). Times are medians of repeated runs after a
warm-up; the machine's matmul peak is measured in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from papa_utils import describe, encode, get_task, load_model, load_task, replace_heads
from papa_utils.core.device import backbone_precision
from papa_utils.core.probe import ProbeConfig, rank_heads_by_gates, train_probe
from papa_utils.core.features import extract_features
from papa_utils.records.runs import ROOT, atomic_path, environment, write_json


def timed(fn, repeats: int) -> float:
    """Median wall seconds of fn() over `repeats` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(dtype: torch.dtype, sizes=(1024, 2048, 3072), repeats: int = 5) -> float:
    """The best rate of square matrix products over a few sizes (fastest of `repeats` runs each)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def forward_gflop(model, length: int) -> float:
    """Multiply-adds x 2 of one example through the encoder layers (projections, FFN, attention)."""
    c = model.config
    info = describe(model)
    d, inner = info["hidden"], getattr(c, "intermediate_size", 4 * info["hidden"])
    per_layer = 2 * (4 * length * d * d + 2 * length * d * inner + 2 * length * length * d)
    return info["layers"] * per_layer / 1e9


def forward_section(model_name: str, length: int, batch: int, repeats: int) -> dict:
    model, tokenizer = load_model(model_name)
    info = describe(model)
    inputs = encode(load_task("mrpc", "validation").head(batch), tokenizer, length).model_inputs()
    constants = torch.rand(info["layers"], info["heads"], length, length)
    half = [(layer, h) for layer in range(info["layers"]) for h in range(0, info["heads"], 2)]

    def run():
        with torch.no_grad():
            model(**inputs)

    def run_bf16():
        with torch.no_grad(), backbone_precision("bf16"):
            model(**inputs)

    out = {"model": model_name, "L": length, "batch": batch, "eager": timed(run, repeats)}
    model.config._attn_implementation = "sdpa"  # MPNet computes attention inline; the switch changes nothing
    out["sdpa"] = timed(run, repeats)
    out["sdpa_bf16"] = timed(run_bf16, repeats)
    model.config._attn_implementation = "eager"
    out["unmodified"] = min(out["eager"], out["sdpa"])  # the faster unmodified implementation
    with replace_heads(model, constants, "all"):
        out["all_replaced"] = timed(run, repeats)
        out["all_replaced_bf16"] = timed(run_bf16, repeats)
    with replace_heads(model, constants, half):
        out["half_replaced"] = timed(run, repeats)
    with replace_heads(model, constants, "all", fast=False):
        out["straightforward_all"] = timed(run, repeats)
    out["gflops_fp32"] = forward_gflop(model, length) * batch / out["unmodified"]
    out["gflops_bf16"] = forward_gflop(model, length) * batch / out["sdpa_bf16"]
    return out


def probe_protocol_section(model_name: str, task: str, n_train: int, n_dev: int, epochs: int, seeds) -> dict:
    """The probe stage of one configuration as the pipeline runs it (every seed, same epochs): cached features
    (one eval-mode backbone pass shared by the seeds) vs the reference protocol (backbone re-run for every
    batch with dropout on)."""
    model, tokenizer = load_model(model_name)
    spec = get_task(task)
    train = encode(load_task(task, "train").sample(n_train), tokenizer, 64)
    dev = encode(load_task(task, "validation").sample(n_dev), tokenizer, 64)
    start = time.perf_counter()
    features = [extract_features(model, spec, d) for d in (train, dev)]
    cached = [train_probe(model, spec, train, dev, seed=seed, config=ProbeConfig(epochs=epochs),
                          train_features=features[0], dev_features=features[1]) for seed in seeds]
    t_cached = time.perf_counter() - start
    start = time.perf_counter()
    reference = [train_probe(model, spec, train, dev, seed=seed, config=ProbeConfig(epochs=epochs, protocol="reference"))
                 for seed in seeds]
    t_reference = time.perf_counter() - start
    mean = lambda runs: float(np.mean([r.metrics[spec.metric] for r in runs]))  # noqa: E731
    return {"model": model_name, "task": task, "train": n_train, "dev": n_dev, "epochs": epochs, "seeds": len(seeds),
            "cached_seconds": t_cached, "reference_seconds": t_reference, "metric": spec.metric,
            "cached_metric": mean(cached), "reference_metric": mean(reference)}


def bf16_metric_section(model_name: str, task: str, n_train: int, n_dev: int, epochs: int) -> dict:
    """Probe metric with bf16 vs fp32 backbone features (all heads replaced and baseline), same seed."""
    from papa_utils import compute_average_attention

    model, tokenizer = load_model(model_name)
    spec = get_task(task)
    train = encode(load_task(task, "train").sample(n_train), tokenizer, 64)
    dev = encode(load_task(task, "validation").sample(n_dev), tokenizer, 64)
    averages = compute_average_attention(model, train.batches(32), progress=False)
    out = {"model": model_name, "task": task, "metric": spec.metric}
    for heads, name in (([], "baseline"), ("all", "papa")):
        for precision in ("fp32", "bf16"):
            start = time.perf_counter()
            features = [extract_features(model, spec, d, averages, heads, precision=precision) for d in (train, dev)]
            out[f"{name}_{precision}_feature_seconds"] = time.perf_counter() - start
            r = train_probe(model, spec, train, dev, config=ProbeConfig(epochs=epochs), train_features=features[0],
                            dev_features=features[1])
            out[f"{name}_{precision}"] = r.metrics[spec.metric]
    return out


def ranking_section(model_name: str, task: str, n: int, settings, seeds=(42, 43)) -> dict:
    """How stable each way of ranking the heads is, and what it costs: for every gate setting (gate lr, epochs,
    backbone precision), gates trained on n examples with two seeds (another init and data order) and on a disjoint
    subset of n examples; the input-dependence score on the two subsets. Agreement = Spearman correlation of the
    heads' positions and overlap of the first halves (``statistics.ranking_agreement``)."""
    from papa_utils import compute_average_attention
    from papa_utils.reports.statistics import ranking_agreement
    from papa_utils.core.head_scores import head_scores, ranking_from_scores

    model, tokenizer = load_model(model_name)
    spec = get_task(task)
    pool = load_task(task, "train")
    subsets = [encode(pool.sample(n, skip=i * n), tokenizer, 64) for i in (0, 1)]
    averages = compute_average_attention(model, subsets[0].batches(32), progress=False)
    rows = []
    for gate_lr, epochs, precision in settings:
        config = ProbeConfig(precision=precision, gate_lr=gate_lr)
        runs = [rank_heads_by_gates(model, spec, subsets[i], averages, epochs=epochs, seed=seed, config=config)
                for i, seed in ((0, seeds[0]), (0, seeds[1]), (1, seeds[0]))]
        seed_agree, subset_agree = ranking_agreement(runs[0]["ranking"], runs[1]["ranking"]), \
            ranking_agreement(runs[0]["ranking"], runs[2]["ranking"])
        rows.append({"ranking": "gates", "gate_lr": gate_lr or config.lr, "epochs": epochs, "precision": precision,
                     "seconds": runs[0]["seconds"], "largest_gate": float(np.abs(np.array(runs[0]["gates"])).max()),
                     "spearman_seeds": seed_agree["spearman"], "overlap_seeds": seed_agree["first_half_overlap"],
                     "spearman_subsets": subset_agree["spearman"], "overlap_subsets": subset_agree["first_half_overlap"]})
    scored = []
    for data in subsets:
        start = time.time()
        scored.append((ranking_from_scores(head_scores(model, averages, data.batches(32))["input_dependence"]),
                       time.time() - start))
    agree = ranking_agreement(scored[0][0], scored[1][0])
    rows.append({"ranking": "input_dependence", "gate_lr": None, "epochs": None, "precision": "fp32",
                 "seconds": scored[0][1], "largest_gate": None, "spearman_seeds": 1.0, "overlap_seeds": 1.0,
                 "spearman_subsets": agree["spearman"], "overlap_subsets": agree["first_half_overlap"]})
    return {"model": model_name, "task": task, "examples": n, "seeds": list(seeds), "settings": rows}


def probe_settings_section(model_name: str, task: str, n_train: int, n_dev: int, length: int, settings,
                           seeds=(42, 43, 44)) -> dict:
    """The probe on the same cached features under each setting (lr, epochs, precision of its products): the
    paper's 15 epochs at 2e-5 in fp32, fewer epochs at a higher lr, and the same in bf16. Seconds per probe (mean
    over seeds) and the final metric (mean and spread over seeds)."""
    model, tokenizer = load_model(model_name)
    spec = get_task(task)
    train = encode(load_task(task, "train").sample(n_train), tokenizer, length)
    dev = encode(load_task(task, "validation").sample(n_dev), tokenizer, length)
    features = [extract_features(model, spec, d) for d in (train, dev)]
    rows = []
    for lr, epochs, precision in settings:
        config = ProbeConfig(lr=lr, epochs=epochs, probe_precision=precision)
        runs = [train_probe(model, spec, train, dev, seed=seed, config=config, train_features=features[0],
                            dev_features=features[1]) for seed in seeds]
        values = [r.metrics[spec.metric] for r in runs]
        rows.append({"lr": lr, "epochs": epochs, "precision": precision,
                     "seconds": float(np.mean([r.seconds for r in runs])), "metric_mean": float(np.mean(values)),
                     "metric_min": float(np.min(values)), "metric_max": float(np.max(values))})
    return {"model": model_name, "task": task, "train": n_train, "dev": n_dev, "L": length, "metric": spec.metric,
            "seeds": len(seeds), "settings": rows}


def probe_cell_section(model_name: str, task: str, settings, seeds=(42, 43, 44), quick: bool = False) -> dict:
    """The cpu profile's probes of one cell (its examples, L, precision and epochs), on the same cached features,
    under each (batch size, lr) of `settings`, the first being the one the others are compared with (batch 16, the
    paper's): the baseline (no head replaced) and full PAPA (every head constant), every seed. Seconds per probe
    and each seed's headline metric, so that a setting is compared with the first within the spread of seeds."""
    from dataclasses import replace

    from papa_utils.core.backbones import cached_model, probe_config
    from papa_utils.core.features import averages_and_features
    from papa_utils.settings.profiles import PROFILES
    from papa_utils.runner.steps import encoded, task_data

    profile = PROFILES["cpu"]
    spec = get_task(task)
    model, _ = cached_model(model_name)
    sizes = {part: 64 if quick else profile.size(model_name, f"{part}_examples", task) for part in ("train", "dev")}
    train_data = task_data(task, "train", sizes["train"])
    dev_data = task_data(task, "validation", sizes["dev"])
    train, dev = (encoded(model_name, d, profile.length(task)) for d in (train_data, dev_data))
    config = probe_config(profile, model_name)
    averages, baseline = averages_and_features(model, spec, train, precision=config.precision, passes=config.passes)
    features = {"baseline": (baseline, extract_features(model, spec, dev, precision=config.precision,
                                                        passes=config.passes))}
    features["full PAPA"] = tuple(extract_features(model, spec, d, averages, "all", precision=config.precision,
                                                   passes=config.passes) for d in (train, dev))
    rows = []
    for batch_size, lr in settings:
        chosen = replace(config, batch_size=batch_size, lr=lr, epochs=1 if quick else config.epochs)
        for name, (train_features, dev_features) in features.items():
            runs = [train_probe(model, spec, train, dev, seed=seed, config=chosen, train_features=train_features,
                                dev_features=dev_features, heads=[] if name == "baseline" else "all")
                    for seed in seeds]
            rows.append({"batch_size": batch_size, "lr": lr, "configuration": name,
                         "seconds": float(np.mean([r.seconds for r in runs])),
                         "values": [r.metrics[spec.metric] for r in runs]})
    parts = [probe_parts(model, spec, train, dev, features["baseline"], config, batch_size)
             for batch_size in sorted({b for b, _ in settings})]
    return {"model": model_name, "task": task, "train": len(train_data), "dev": len(dev_data),
            "L": profile.length(task), "metric": spec.metric, "precision": config.probe_precision,
            "epochs": 1 if quick else config.epochs, "seeds": list(seeds), "settings": rows, "parts": parts}


def memory_bandwidth_gbs(megabytes: int = 512, repeats: int = 5) -> float:
    """The best rate of copying a large fp32 tensor, bytes read plus bytes written per second (GB/s)."""
    a = torch.empty(megabytes * 2 ** 18)
    b = torch.empty_like(a)
    b.copy_(a)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - start)
    return 2 * a.numel() * 4 / best / 1e9


# aten operations of a probe's training step, by the part of the step they belong to
PROBE_PARTS = {"matrix products": ("aten::addmm", "aten::mm", "aten::bmm"),
               "AdamW": ("aten::_fused_adamw_",),
               "gathering the batch": ("aten::index_select", "aten::copy_")}


def probe_parts(model, spec, train: "Encoded", dev: "Encoded", features, config, batch_size: int) -> dict:
    """Where one epoch of a probe's training goes (torch.profiler, self time by operation, ``PROBE_PARTS``) at
    `batch_size`, with each part's floor on this machine: the pool layer's floating-point work at the measured
    peak of the probe's precision, AdamW's bytes and the gathering's at the measured memory bandwidth."""
    from dataclasses import replace

    from torch.profiler import ProfilerActivity, profile as torch_profile

    from papa_utils.core.probe import make_probe

    parameters = sum(p.numel() for p in make_probe(spec, model, train.length).parameters())
    dtype = torch.bfloat16 if config.probe_precision == "bf16" else torch.float32
    peak, bandwidth = matmul_peak_gflops(dtype), memory_bandwidth_gbs()
    chosen = replace(config, batch_size=batch_size, epochs=1)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        result = train_probe(model, spec, train, dev, config=chosen, train_features=features[0],
                             dev_features=features[1])
    self_seconds = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    parts = {part: sum(self_seconds.get(op, 0.0) for op in ops) for part, ops in PROBE_PARTS.items()}
    steps = -(-len(train) // batch_size)
    rows = int(features[0].states.shape[0])  # every kept row is gathered once an epoch
    pooled = rows if spec.token_task else len(train)  # rows through the pool layer
    floors = {"matrix products": 6 * parameters * pooled / (peak * 1e9),  # forward + 2 backward products
              # fused AdamW reads parameter, gradient and both moments and writes three of them back, in fp32
              "AdamW": 7 * 4 * parameters * steps / (bandwidth * 1e9),
              # each fp16 row read once, written and read again in the probe's precision
              "gathering the batch": rows * features[0].states[0].numel() * (2 + 2 * dtype.itemsize)
                                     / (bandwidth * 1e9)}
    return {"batch_size": batch_size, "seconds": result.seconds, "steps": steps, "parts": parts, "floors": floors,
            "parameters": parameters, "peak_gflops": peak, "bandwidth_gbs": bandwidth}


def precision_section(models) -> list[dict]:
    """What precision="auto" picks for each model on this machine, and the timings behind the choice: measured
    afresh, at the shape the pipeline times (``backbones.PRECISION_ROWS``)."""
    from papa_utils.core.device import auto_precision
    from papa_utils.core.backbones import PRECISION_ROWS

    out = []
    for name in models:
        model, _ = load_model(name)
        c = model.config
        out.append({"model": name, **auto_precision(c.hidden_size, c.intermediate_size, PRECISION_ROWS)})
    return out


def profile_pass_examples(profile, model_name: str, task: str, total_heads: int) -> dict:
    """How many examples a run of `profile` puts through each kind of backbone pass in one (model, task) cell:
    "attention" (probabilities returned: the averages, the head scores and their stability subset) and
    "features" at each sweep point k (train + dev, one pass per configuration shared by the seeds; at k = 0 the
    training features come with the averages' pass when they are the same examples), plus the learning curve's
    k = 0 and all-heads passes over its largest subset and the dev set. The profile's own pass counts, to weigh
    the packing section's per-example times as the profile spends them."""
    from papa_utils import load_task as split
    from papa_utils.runner.steps import stability_variants

    size = lambda name: profile.size(model_name, name, task)  # noqa: E731
    whole = lambda n, name: n if n is not None else len(split(task, name))  # noqa: E731
    averages, train = whole(size("average_examples"), "train"), whole(size("train_examples"), "train")
    dev, rank = whole(size("dev_examples"), "validation"), whole(size("rank_examples"), "train")
    scored = [profile.ranking, *profile.compare_rankings]
    scores = rank * (1 + any(v for m, v in stability_variants(profile, model_name).items() if m != "gates")) \
        if any(m in ("input_dependence", "variance") for m in scored) else 0
    features = {k: dev + (0 if k == 0 and averages == train else train)
                for k in profile.sweep_counts(model_name, total_heads)}
    if model_name in profile.curve_models and task in profile.curve_tasks:
        largest = min(max(profile.curve_sizes), len(split(task, "train")))
        for k in (0, total_heads):
            features[k] = features.get(k, 0) + largest + dev
    return {"attention": averages + scores, "features": features}


def stratified(data, count: int, batch_size: int = 32) -> list:
    """The example indices of `count` of the batches a packed run makes of `data` (sorted by real length, longest
    first), at evenly spaced ranks from the longest batch to the shortest."""
    from papa_utils.core.packing import backbone_batches

    every = [batch.examples for batch in backbone_batches(data, batch_size, "packed")]
    return [every[i] for i in np.linspace(0, len(every) - 1, min(count, len(every))).round().astype(int)]


def packing_section(quick: bool) -> dict:
    """Padded vs packed backbone passes of the cpu profile, side by side on the same examples: for every model and
    task at the profile's L, a pass with attention returned (averages, head scores) and a feature pass at each of
    the profile's sweep points, over the same examples in both ways. The examples are batches a run makes: the
    profile's own training subset and dev set, sorted by real length into batches of 32 as the packed passes do,
    of which `batches` per split at evenly spaced ranks (longest to shortest) are timed; a small random sample
    would instead pad one batch to its longest example. Per cell: seconds per example, real-token fill of the
    timed batches, tokens per second; then the whole profile's backbone seconds, each kind of pass weighted by the
    examples the profile puts through it (``profile_pass_examples``)."""
    from papa_utils.core.head_scores import random_ranking
    from papa_utils.core.packing import pack, run_backbone
    from papa_utils.settings.profiles import get_profile
    from papa_utils.runner.steps import replaced_heads, task_data

    profile = get_profile("cpu")
    models, tasks = (profile.models[:1], profile.tasks[:2]) if quick else (profile.models, profile.tasks)
    batches = 1 if quick else 2
    cells = []
    for model_name in models:
        model, tokenizer = load_model(model_name)
        info = describe(model)
        total = info["layers"] * info["heads"]
        order = random_ranking(info["layers"], info["heads"], seed=0)
        for task in tasks:
            length = profile.length(task)
            data = [encode(task_data(task, split, profile.size(model_name, size, task)), tokenizer, length)
                    for split, size in (("train", "train_examples"), ("validation", "dev_examples"))]
            timed_batches = [(part, stratified(part, batches)) for part in data]  # (data, [example indices])
            n = sum(len(index) for _, chosen in timed_batches for index in chosen)
            real = sum(int(part.attention_mask[index].sum()) for part, chosen in timed_batches for index in chosen)
            constants = torch.rand(info["layers"], info["heads"], length, length)
            weights = profile_pass_examples(profile, model_name, task, total)

            def one_pass(passes, heads, attention):
                def run():
                    with torch.no_grad(), replace_heads(model, constants, heads):
                        for part, chosen in timed_batches:
                            for index in chosen:
                                run_backbone(model, pack(part, index, passes),
                                             output_attentions=attention, output_hidden_states=True)
                return run

            kinds = {"attention": ([], True), **{f"features k={k}": (replaced_heads(k, total, order), False)
                                                 for k in weights["features"]}}
            cell = {"model": model_name, "task": task, "L": length, "examples": n, "fill": real / (n * length),
                    "real_tokens": real, "passes": {}}
            for kind, (heads, attention) in kinds.items():
                cell["passes"][kind] = {p: timed(one_pass(p, heads, attention), 1) / n for p in ("padded", "packed")}
                cell["passes"][kind]["examples"] = (weights["attention"] if kind == "attention" else
                                                    weights["features"][int(kind.split("=")[1])])
            for p in ("padded", "packed"):
                cell[f"{p}_seconds"] = sum(v[p] * v["examples"] for v in cell["passes"].values())
                cell[f"{p}_tokens_per_second"] = real / sum(v[p] for v in cell["passes"].values()) / n * len(kinds)
            cells.append(cell)
            print(f"packing {model_name} {task}: {cell['padded_seconds']:.0f} s padded, {cell['packed_seconds']:.0f} s "
                  f"packed over the profile's passes", file=sys.stderr, flush=True)
    return {"profile": profile.name, "cells": cells,
            "padded_seconds": sum(c["padded_seconds"] for c in cells),
            "packed_seconds": sum(c["packed_seconds"] for c in cells)}


def packing_markdown(r: dict) -> list[str]:
    lines = ["", f"## Packed vs padded backbone passes: the {r['profile']} profile's passes on the same examples", "",
             "Per cell, the same examples through every kind of pass the profile makes: batches of 32 a run makes (the "
             "profile's training subset and dev set sorted by real length), two per split at evenly spaced ranks, "
             "padded (the whole PAPA layout) and packed (real tokens only); seconds per example averaged over the kinds "
             "of pass; the profile's backbone seconds weigh each kind by the examples the profile puts through it.", "",
             "| model | task | L | real-token fill | padded ms / example | packed ms / example | real tokens / s padded "
             "/ packed | profile's backbone s padded / packed | packed vs padded |", "|---|---|---|---|---|---|---|---|---|"]
    for c in r["cells"]:
        kinds = c["passes"].values()
        padded = 1e3 * statistics.mean(v["padded"] for v in kinds)
        packed = 1e3 * statistics.mean(v["packed"] for v in kinds)
        lines.append(f"| {c['model']} | {c['task']} | {c['L']} | {100 * c['fill']:.0f}% | {padded:.1f} | {packed:.1f} | "
                     f"{c['padded_tokens_per_second']:,.0f} / {c['packed_tokens_per_second']:,.0f} | "
                     f"{c['padded_seconds']:,.0f} / {c['packed_seconds']:,.0f} | "
                     f"{c['padded_seconds'] / c['packed_seconds']:.2f}x |")
    lines += ["", f"packing: packed vs padded {r['padded_seconds'] / r['packed_seconds']:.2f}x over the profile's passes "
              f"({r['padded_seconds']:,.0f} s padded, {r['packed_seconds']:,.0f} s packed)"]
    return lines


# the paper's models by size (hidden, layers, feed-forward): BERT, RoBERTa and DeBERTa v1 share them; DeBERTa's
# relative attention adds work this count leaves out
PAPER_SIZES = {"base": (768, 12, 3072), "large": (1024, 24, 4096)}
# an assumed sustained rate for the GPU column: what transformers' own benchmark reports for bert-base-uncased
# (batch 8, L = 128, fp32, 0.018 s on a TITAN RTX: 8 x 22.4 GFLOP / 0.018 s = 10 TFLOPS); not measured here
GPU_TFLOPS = 10.0
# the official training and dev splits (MNLI: matched dev) the paper profile runs on from the Hub; the staged MNLI
# training data here are a 19,739-pair subset
PAPER_SPLITS = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "mnli": (392702, 9815),
                "ner": (14041, 3250), "pos": (14041, 3250)}


def layer_gflop(hidden: int, layers: int, inner: int, length: int) -> float:
    """Multiply-adds x 2 of one example through `layers` encoder layers (as ``forward_gflop``)."""
    return layers * 2 * (4 * length * hidden * hidden + 2 * length * hidden * inner + 2 * length * length * hidden) / 1e9


def paper_cost_section(quick: bool) -> dict:
    """What one cell of the paper profile costs, from the dry run's path: (1) one paper-dry cell run through
    ``pipeline.cell_steps`` with every backbone call counted (examples, with or without gradients) and timed, next
    to ``cost.cell_passes``'s count for it; (2) that count for every paper cell (whole splits), in GFLOP,
    in days on this machine at the rate of a BERT-base-sized model measured here (MPNet-base, L = 128, batch 32,
    fp32), and in hours of a GPU sustaining ``GPU_TFLOPS``."""
    import tempfile
    from pathlib import Path

    from papa_utils.core import backbones
    from papa_utils.runner import cost, pipeline
    from papa_utils.settings import profiles

    profile = profiles.get_profile("paper-dry")
    model_name, task = profile.models[0], "mrpc"
    model, _ = backbones.cached_model(model_name)
    info = describe(model)
    total = info["layers"] * info["heads"]
    with tempfile.TemporaryDirectory() as folder, cost.counting_backbone_examples(model) as counted:
        start = time.time()
        pipeline.cell_steps(Path(folder), profile, model_name, task)
        seconds = time.time() - start
    dry = {"model": model_name, "task": task, "seconds": seconds, "counted": counted,
           "predicted": cost.cell_passes(profile, model_name, task, total, len(load_task(task, "train")),
                                             len(load_task(task, "validation")))}
    # this machine's rate on a BERT-base-sized model
    mpnet, tokenizer = load_model("minilm-l6" if quick else "mpnet-base")
    batch = encode(load_task("mrpc", "validation").head(32), tokenizer, 128).model_inputs()
    with torch.no_grad():
        per_batch = timed(lambda: mpnet(**batch), 1 if quick else 3)
    cpu_gflops = forward_gflop(mpnet, 128) * 32 / per_batch
    paper = profiles.get_profile("paper")
    cells = []
    for size, (hidden, layers, inner) in PAPER_SIZES.items():
        for t, (n_train, n_dev) in PAPER_SPLITS.items():
            passes = cost.cell_passes(paper, f"bert-{size}", t, layers * hidden // 64, n_train, n_dev)
            length = paper.length(t)
            # backward ~ twice the forward: a gate example costs three forward passes
            gflop = layer_gflop(hidden, layers, inner, length) * (passes["forward"] + 3 * passes["forward_backward"])
            cells.append({"size": size, "task": t, "L": length, "train": n_train, "dev": n_dev, **passes,
                          "gflop": gflop, "cpu_days": gflop / cpu_gflops / 86400,
                          "gpu_hours": gflop / (GPU_TFLOPS * 1e3) / 3600})
    return {"dry_cell": dry, "cpu_gflops": cpu_gflops, "rate_model": "minilm-l6" if quick else "mpnet-base",
            "gpu_tflops": GPU_TFLOPS, "cells": cells}


def paper_cost_markdown(r: dict) -> list[str]:
    d = r["dry_cell"]
    lines = ["", "## The paper profile: cost per cell (README, \"Running the paper profile\")", "",
             f"One paper-dry cell ({d['model']} x {d['task']}, whole splits, streaming, "
             f"{d['seconds']:.0f} s here): {d['counted']['forward']:,} examples through the backbone without "
             f"gradients and {d['counted']['forward_backward']:,} with (the gates) counted; `cost.cell_passes` "
             f"predicts {d['predicted']['forward']:,} and {d['predicted']['forward_backward']:,}.", "",
             f"Every paper cell by the same count (15 epochs, 3 seeds, 5 sweep points + the attention-free probe, "
             f"gates for 15 epochs), as BERT of its size; days on this machine at {r['cpu_gflops']:.0f} GFLOPS "
             f"(measured: {r['rate_model']}, L 128, batch 32, fp32); hours of a GPU sustaining "
             f"{r['gpu_tflops']:.0f} TFLOPS (assumed).", "",
             "| size | task | L | train / dev | examples forward | with backward | PFLOP | days here | GPU hours |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in r["cells"]:
        lines.append(f"| {c['size']} | {c['task']} | {c['L']} | {c['train']:,} / {c['dev']:,} | {c['forward']:,} | "
                     f"{c['forward_backward']:,} | {c['gflop'] / 1e6:,.0f} | {c['cpu_days']:,.0f} | "
                     f"{c['gpu_hours']:,.1f} |")
    total = sum(c["gpu_hours"] for c in r["cells"]) * 3  # BERT, RoBERTa, DeBERTa of each size
    lines += ["", f"The grid (BERT, RoBERTa and DeBERTa of both sizes): {total:,.0f} GPU hours at that rate."]
    return lines


def markdown(report: dict) -> str:
    lines = [f"Measured on {report.get('processor') or _processor()}, "
             f"{report['threads']} threads, commit `{str(report['environment'].get('git_commit'))[:7]}`"
             f"{' (sections: ' + ', '.join(report['sections']) + ')' if report.get('sections') else ''}.", ""]
    if "forward" in report:
        lines += forward_markdown(report)
    if "probe_protocol" in report:
        p = report["probe_protocol"]
        lines += ["## Probe stage of one configuration: cached features (incl. their backbone pass) vs reference "
                  "protocol", "",
                  "| model | task | train / dev | epochs x seeds | cached | reference | speed-up | metric cached / "
                  "reference (mean over seeds) |",
                  "|---|---|---|---|---|---|---|---|",
                  f"| {p['model']} | {p['task']} | {p['train']} / {p['dev']} | {p['epochs']} x {p['seeds']} | "
                  f"{p['cached_seconds']:.1f} s | "
                  f"{p['reference_seconds']:.1f} s | {p['reference_seconds'] / p['cached_seconds']:.1f}x | "
                  f"{p['cached_metric']:.1f} / {p['reference_metric']:.1f} ({p['metric']}) |", ""]
    if "bf16_metrics" in report:
        lines += ["## bf16 backbone: effect on probe metrics (same seed, same data)", "",
                  "| model | task | metric | baseline fp32 / bf16 | all heads constant fp32 / bf16 | feature pass "
                  "speed-up |", "|---|---|---|---|---|---|"]
        for b in report["bf16_metrics"]:
            speed = b["baseline_fp32_feature_seconds"] / b["baseline_bf16_feature_seconds"]
            lines.append(f"| {b['model']} | {b['task']} | {b['metric']} | {b['baseline_fp32']:.1f} / "
                         f"{b['baseline_bf16']:.1f} | {b['papa_fp32']:.1f} / {b['papa_bf16']:.1f} | {speed:.2f}x |")
    if "probe_settings" in report:
        lines += probe_settings_markdown(report["probe_settings"])
    if "probe" in report:
        lines += probe_markdown(report["probe"])
    if "ranking" in report:
        lines += ranking_markdown(report["ranking"])
    if "paper_cost" in report:
        lines += paper_cost_markdown(report["paper_cost"])
    if "packing" in report:
        lines += packing_markdown(report["packing"])
    if "precision" in report:
        lines += ["", "## precision=\"auto\": what it picks here (the model's own products, batch 32 x L 128, the "
                  "bf16 ones under autocast; bf16 only below 0.9x the fp32 time)", "",
                  "| model | processor | fp32 s | bf16 s | bf16 / fp32 | choice |", "|---|---|---|---|---|---|"]
        for p in report["precision"]:
            lines.append(f"| {p['model']} | {p['processor']} | {p['fp32_seconds']:.3f} | {p['bf16_seconds']:.3f} | "
                         f"{p['bf16_seconds'] / p['fp32_seconds']:.2f}x | {p['choice']} |")
    return "\n".join(lines) + "\n"


def _processor() -> str:
    from papa_utils.core.device import processor_name

    return processor_name("cpu")


def forward_markdown(report: dict) -> list[str]:
    lines = ["## Forward pass (batch 32, fp32 unless noted; ratio > 1 means the first is faster)", "",
             "| model | L | all replaced vs unmodified | half replaced vs unmodified | ours vs straightforward "
             "(all replaced) | bf16 vs fp32 (unmodified) | throughput vs matmul peak (fp32 / bf16) |",
             "|---|---|---|---|---|---|---|"]
    peak32, peak16 = report["matmul_peak_gflops"]["fp32"], report["matmul_peak_gflops"]["bf16"]
    for f in report["forward"]:
        lines.append(f"| {f['model']} | {f['L']} | {f['unmodified'] / f['all_replaced']:.2f}x | "
                     f"{f['unmodified'] / f['half_replaced']:.2f}x | {f['straightforward_all'] / f['all_replaced']:.2f}x"
                     f" | {f['unmodified'] / f['sdpa_bf16']:.2f}x | {100 * f['gflops_fp32'] / peak32:.0f}% / "
                     f"{100 * f['gflops_bf16'] / peak16:.0f}% |")
    return lines + ["", f"Matmul peak measured in this run: {peak32:.0f} GFLOP/s fp32, {peak16:.0f} GFLOP/s bf16 "
                    f"(best square product, n = 1024 to 3072). Unmodified = the faster of transformers' eager and SDPA "
                    f"attention.", ""]


def probe_settings_markdown(sections: list[dict]) -> list[str]:
    lines = ["", "## Probe settings on the same cached features: epochs and lr, and bf16 products (mean over seeds)", "",
             "| model | task | train / dev, L | lr | epochs | probe products | seconds per probe | vs the paper's | "
             "metric (min to max) |", "|---|---|---|---|---|---|---|---|---|"]
    for p in sections:
        reference = p["settings"][0]["seconds"]
        for s in p["settings"]:
            lines.append(f"| {p['model']} | {p['task']} | {p['train']} / {p['dev']}, {p['L']} | {s['lr']:g} | "
                         f"{s['epochs']} | {s['precision']} | {s['seconds']:.1f} | {reference / s['seconds']:.2f}x | "
                         f"{s['metric_mean']:.1f} ({s['metric_min']:.1f} to {s['metric_max']:.1f}) {p['metric']} |")
    return lines


def probe_markdown(cells: list[dict]) -> list[str]:
    """The probe's speed under each setting against the first (batch 16), summed over the cells' probes,
    each cell's metric beside the seeds' spread, and where one epoch's time goes."""
    before = cells[0]["settings"][0]
    name = lambda s: f"batch {s['batch_size']}, lr {s['lr']:g}"  # noqa: E731
    lines = ["", "## Probe training: the cpu profile's probes at other batch sizes (same cached features)", ""]
    for setting in {(s["batch_size"], s["lr"]): s for c in cells for s in c["settings"][2:]}.values():
        after = sum(s["seconds"] for c in cells for s in c["settings"]
                    if (s["batch_size"], s["lr"]) == (setting["batch_size"], setting["lr"]))
        first = sum(s["seconds"] for c in cells for s in c["settings"][:2])
        lines.append(f"probe: {name(setting)} vs {name(before)} {first / after:.2f}x")
    lines += ["", "| model | task | configuration | setting | seconds per probe | metric per seed | mean | "
              "difference from batch 16 | twice its standard error over seeds | within seed noise |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        reference = {s["configuration"]: s for s in c["settings"][:2]}
        for s in c["settings"]:
            ref = reference[s["configuration"]]
            diff = np.mean(s["values"]) - np.mean(ref["values"])
            noise = 2 * np.sqrt((np.var(s["values"], ddof=1) + np.var(ref["values"], ddof=1)) / len(s["values"]))
            lines.append(f"| {c['model']} | {c['task']} | {s['configuration']} | {name(s)} | {s['seconds']:.1f} | "
                         + ", ".join(f"{v:.1f}" for v in s["values"]) + f" | {np.mean(s['values']):.1f} {c['metric']} | "
                         f"{diff:+.1f} | {noise:.1f} | {'yes' if abs(diff) <= noise else 'no'} |")
    lines += ["", "Where one epoch of the baseline's probe goes (self time by operation) and the share of each part's "
              "floor it reaches (products at the measured peak of the probe's precision, AdamW and gathering at the "
              "measured memory bandwidth):", "",
              "| model | task | batch | epoch s | " + " | ".join(PROBE_PARTS) + " | other |",
              "|---|---|---|---|" + "---|" * (len(PROBE_PARTS) + 1)]
    for c in cells:
        for p in c["parts"]:
            cells_ = [f"{p['parts'][k]:.2f} s ({100 * p['floors'][k] / p['parts'][k]:.0f}% of floor)"
                      if p["parts"][k] else "0" for k in PROBE_PARTS]
            lines.append(f"| {c['model']} | {c['task']} | {p['batch_size']} | {p['seconds']:.1f} | "
                         + " | ".join(cells_) + f" | {p['seconds'] - sum(p['parts'].values()):.2f} s |")
    return lines


def ranking_markdown(r: dict) -> list[str]:
    lines = ["", f"## Head ranking: stability and cost ({r['model']}, {r['task']}, {r['examples']} examples; seeds "
             f"{r['seeds'][0]} vs {r['seeds'][1]}, and two disjoint subsets)", "",
             "| ranking | gate lr | epochs | backbone | seconds | largest gate | Spearman across seeds (first halves) | "
             "Spearman across subsets (first halves) |", "|---|---|---|---|---|---|---|---|"]
    for s in r["settings"]:
        gate = "–" if s["largest_gate"] is None else f"{s['largest_gate']:.2g}"
        lines.append(f"| {s['ranking']} | {s['gate_lr'] or '–'} | {s['epochs'] or '–'} | {s['precision']} | "
                     f"{s['seconds']:.1f} | {gate} | {s['spearman_seeds']:.2f} ({100 * s['overlap_seeds']:.0f}%) | "
                     f"{s['spearman_subsets']:.2f} ({100 * s['overlap_subsets']:.0f}%) |")
    return lines


SECTIONS = ("forward", "probe_protocol", "bf16_metrics", "probe_settings", "probe", "ranking", "precision",
            "paper_cost", "packing")
# (batch size, lr): batch 16 at the lr the cpu profile had at that batch, then the batch-64 settings compared with it
PROBE_SETTINGS = ((16, 2e-4), (64, 4e-4), (64, 6e-4), (64, 8e-4))


def measure(name: str, quick: bool, models):
    """One section of the report, at full size or (quick) tiny sizes."""
    if name == "forward":
        return [forward_section(m, L, 32, 1 if quick else 3) for m in models for L in ([64] if quick else [64, 128])]
    if name == "probe_protocol":
        return probe_protocol_section("minilm-l6", "sst2", 64 if quick else 512, 64 if quick else 300,
                                      1 if quick else 15, (42,) if quick else (42, 43, 44))
    if name == "bf16_metrics":
        runs = [("minilm-l6", "sst2", 1000, 500), ("minilm-l6", "mrpc", 1000, 500), ("mpnet-base", "sst2", 400, 400)]
        return [bf16_metric_section(m, t, 64 if quick else n, 64 if quick else d, 1 if quick else 15)
                for m, t, n, d in (runs[:1] if quick else runs)]
    if name == "probe_settings":  # the paper's probe; the cpu profile's; the same with bf16 products
        settings = [(2e-5, 15, "fp32"), (1e-4, 5, "fp32"), (1e-4, 5, "bf16")]
        runs = [("minilm-l6", "cola", 4000, 1043, 64), ("minilm-l6", "mnli", 4000, 3000, 64),
                ("mpnet-base", "cola", 1000, 500, 64)]
        return [probe_settings_section(m, t, 64 if quick else n, 64 if quick else d, L,
                                       [(lr, 1 if quick else e, p) for lr, e, p in settings],
                                       (42,) if quick else (42, 43, 44))
                for m, t, n, d, L in (runs[:1] if quick else runs)]
    if name == "probe":  # an MPNet cell and a token task of a MiniLM
        return [probe_cell_section(m, t, PROBE_SETTINGS, (42,) if quick else (42, 43, 44), quick)
                for m, t in (("mpnet-base", "cola"), ("minilm-l6", "ner"))[:1 if quick else 2]]
    if name == "ranking":
        return ranking_section("minilm-l6", "sst2", 32 if quick else 1000,
                               [(None, 1, "fp32"), (1e-2, 1, "fp32")] if quick else
                               [(None, 1, "fp32"), (None, 1, "bf16"), (1e-2, 1, "fp32"), (1e-2, 3, "fp32"),
                                (1e-1, 3, "fp32")])
    if name == "precision":
        return precision_section(models)
    if name == "paper_cost":
        return paper_cost_section(quick)
    if name == "packing":
        return packing_section(quick)
    raise ValueError(f"unknown section {name!r}; sections: {', '.join(SECTIONS)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--only", help=f"comma-separated sections to measure ({', '.join(SECTIONS)}); their "
                                       f"report goes to results/bench_<sections>.md, beside the full one")
    args = parser.parse_args(argv)
    sections = args.only.split(",") if args.only else list(SECTIONS)
    for name in sections:
        if name not in SECTIONS:
            parser.error(f"unknown section {name!r}; sections: {', '.join(SECTIONS)}")
    torch.manual_seed(0)
    quick = args.quick
    models = ["minilm-l6"] if quick else ["minilm-l6", "mpnet-base"]
    start = time.time()
    report = {"environment": environment(), "processor": _processor(), "threads": torch.get_num_threads(),
              "sections": sections if args.only else None,
              "matmul_peak_gflops": {"fp32": matmul_peak_gflops(torch.float32),
                                     "bf16": matmul_peak_gflops(torch.bfloat16)}}
    for name in sections:
        report[name] = measure(name, quick, models)
    report["seconds"] = time.time() - start
    text = markdown(report)
    print(text)
    name = "bench" + ("_quick" if quick else "") + ("_" + "-".join(sections) if args.only else "")
    out = ROOT / "results" / name
    write_json(out.with_suffix(".json"), report)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(text)
    print(f"written {out}.md and .json in {report['seconds']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
