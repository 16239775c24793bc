"""The one place that decides where and in which precision the backbone runs.

Every pass (averages, features, ranking, probe, example attention) asks this module: the device a model
lives on, the autocast context for a precision name, and the dtype autocast gives inside that context.
Sums, losses and the probe stay fp32 whatever the backbone's precision.
"""
from __future__ import annotations

import os
from contextlib import nullcontext

import torch

PRECISIONS = ("fp32", "bf16")


def default_device() -> str:
    """$PAPA_DEVICE, else "cuda" when a GPU is visible, else "cpu"."""
    return os.environ.get("PAPA_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def backbone_precision(precision: str = "fp32", device: torch.device | str | None = None):
    """Context for backbone passes on `device` (default: ``default_device()``): fp32 as is, or bf16 autocast."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    if precision == "fp32":
        return nullcontext()
    device_type = torch.device(device or default_device()).type
    return torch.autocast(device_type, dtype=torch.bfloat16)


def autocast_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matrix product on `x` gives here: the autocast dtype of x's device when autocast is on."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
