"""The one place that decides where and in which precision the backbone runs.

Every pass (averages, features, ranking, probe, example attention) asks this module: the device a model
lives on, the autocast context for a precision name, and the dtype autocast gives inside that context.
Sums, losses and the probe's weights stay fp32 whatever the precision; the probe's products follow the backbone's
choice (``probe.ProbeConfig.probe_precision``).
"""
from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from ..settings.choices import PRECISIONS
from ..records.runs import write_json

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def default_device() -> str:
    """$PAPA_DEVICE, else "cuda" when a GPU is visible, else "cpu"."""
    return os.environ.get("PAPA_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def accelerator_count() -> int:
    """GPUs this process can use (0 without CUDA): how many local jobs can each have one."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def model_device(model) -> torch.device:
    return next(model.parameters()).device


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def inputs_on(batch: dict, device) -> dict:
    """The model inputs of a batch (ids, mask, token types; not its labels), moved to the model's device."""
    return {k: v.to(device) for k, v in batch.items() if k in MODEL_INPUTS}


def backbone_precision(precision: str = "fp32", device: torch.device | str | None = None):
    """Context for passes on `device` (default: ``default_device()``): fp32 as is, or bf16 / fp16 autocast for
    that device's type."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    if precision == "fp32":
        return nullcontext()
    device_type = torch.device(device or default_device()).type
    return torch.autocast(device_type, dtype=AUTOCAST_DTYPES[precision])


def precision_problem(model, precision: str) -> str | None:
    """Why `model` cannot run its passes in `precision` on its device, or None when it can: one forward pass of
    a short input (8 tokens, with attentions) under ``backbone_precision``. DeBERTa v1 fails in bf16 inside
    transformers itself ("value cannot be converted to type c10::BFloat16 without overflow")."""
    if precision == "fp32":
        return None
    device = model_device(model)
    ids = torch.ones(1, 8, dtype=torch.long, device=device)
    try:
        with torch.no_grad(), backbone_precision(precision, device):
            model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)
    except (RuntimeError, TypeError) as e:
        return f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def autocast_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matrix product on `x` gives here: the autocast dtype of x's device when autocast is on."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


# bf16 is chosen only when its matrix products are clearly faster: it rounds, so a tie goes to fp32
BF16_MARGIN = 0.9


def processor_name(device: torch.device | str | None = None) -> str:
    """What the timings of ``auto_precision`` depend on: the GPU's name, or the CPU's model name."""
    device = torch.device(device or default_device())
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _time_products(shapes, precision: str, device: torch.device, repeats: int) -> float:
    """Seconds for `repeats` rounds of the products a @ b of the given (rows, inner, columns) shapes (best of 3),
    as a pass in `precision` runs them: fp32 operands, inside ``backbone_precision`` (bf16: autocast, so the
    casts of the operands are timed too)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    pairs = [(torch.randn(r, k, generator=g).to(device), torch.randn(k, c, generator=g).to(device))
             for r, k, c in shapes]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad(), backbone_precision(precision, device):
        for a, b in pairs:  # warm-up
            a @ b
        best = float("inf")
        for _ in range(3):
            sync()
            start = time.perf_counter()
            for _ in range(repeats):
                for a, b in pairs:
                    a @ b
            sync()
            best = min(best, time.perf_counter() - start)
    return best


def auto_precision(hidden: int, intermediate: int, rows: int, device: torch.device | str | None = None,
                   cache_file: Path | None = None, repeats: int = 5) -> dict:
    """Which backbone precision is faster on this machine for a model of this size: times the model's own matrix
    products (rows x hidden times the Q/K/V/output projections, and the feed-forward pair) in fp32 and in bf16
    autocast (``_time_products``), and picks bf16 only when it takes less than ``BF16_MARGIN`` of the fp32 time.
    Returns {"choice", "fp32_seconds", "bf16_seconds", "processor", "measured"}; with `cache_file` (JSON) the measurement is made
    once per processor, torch version and shape and read back afterwards ("measured": False)."""
    device = torch.device(device or default_device())
    key = (f"{device.type} | {processor_name(device)} | torch {torch.__version__} | {rows}x{hidden}x{intermediate} "
           f"| autocast")  # timings made before the casts were timed do not count
    cache = {}
    if cache_file is not None and Path(cache_file).exists():
        try:
            cache = json.loads(Path(cache_file).read_text())
        except ValueError:
            cache = {}
    if key in cache:
        return {**cache[key], "measured": False}
    shapes = [(rows, hidden, hidden)] * 4 + [(rows, hidden, intermediate), (rows, intermediate, hidden)]
    fp32 = _time_products(shapes, "fp32", device, repeats)
    bf16 = _time_products(shapes, "bf16", device, repeats)
    found = {"choice": "bf16" if bf16 < BF16_MARGIN * fp32 else "fp32", "fp32_seconds": round(fp32, 6),
             "bf16_seconds": round(bf16, 6), "processor": processor_name(device)}
    if cache_file is not None:
        cache[key] = found
        write_json(cache_file, cache)
    return {**found, "measured": True}
