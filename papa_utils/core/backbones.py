"""The backbones a run uses: each loaded once per process (``cached_model``), the precision its passes run in
(``precision_of``: the profile's, or with "auto" the faster on this machine), the probe settings that follow
from both (``probe_config``), and one example's attention for the notebooks that look at it."""
from __future__ import annotations

import logging
from dataclasses import replace
from functools import lru_cache

import torch

from .device import auto_precision, inputs_on, model_device, precision_problem
from .layout import encode
from .models import cache_dir, describe, load_model
from .probe import PROBE_DTYPES, ProbeConfig
from ..settings.profiles import Profile
from ..settings.tasks import load_task

log = logging.getLogger("papa_utils")


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
                               batch_size=profile.probe_batch_size,
                               protocol=profile.protocol,
                               precision=precision, probe_precision=precision if precision in PROBE_DTYPES else "fp32",
                               gate_lr=profile.gate_lr, passes=profile.passes), **changes)


def example_attention(model_name: str, task: str, length: int, index: int = 0):
    """Attention [layers, heads, L, L] of one validation example in the PAPA layout, on pairs of real tokens
    (other entries 0), and its L tokens ("" for padding)."""
    model, tokenizer = cached_model(model_name)
    e = encode(load_task(task, "validation").head(index + 1), tokenizer, length)
    with torch.no_grad():
        out = model(**inputs_on(e.model_inputs(slice(index, index + 1)), model_device(model)), output_attentions=True)
    mask = e.attention_mask[index]
    tokens = [t if m else "" for t, m in zip(tokenizer.convert_ids_to_tokens(e.input_ids[index].tolist()),
                                             mask.tolist())]
    pairs = (mask[:, None] * mask[None, :]).float()  # shown like the averages: real-token pairs only
    return torch.stack([a[0].cpu() for a in out.attentions]) * pairs, tokens
