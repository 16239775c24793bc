"""The reproduction as steps over a grid of models x tasks, with profiles, cached results and a papermill
runner (`python -m papa_utils.pipeline --profile cpu`, which `make figures` calls).

Every step writes its result atomically under the run folder and is skipped when a result built from the
same inputs is already there, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from .averages import AttentionAverages, compute_average_attention
from .layout import Encoded, encode
from .models import load_model
from .runs import ROOT, absolute_data_dir, environment, progress_enabled, write_json
from .tasks import TaskSplit, get_task, load_task

log = logging.getLogger("papa_utils")

NOTEBOOKS = ["01_average_attention", "02_probe_baselines", "03_partial_replacement", "04_model_strength"]


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
    epochs: int = 15
    lengths: dict = field(default_factory=dict)  # task -> L, overriding the task's default

    def length(self, task: str) -> int:
        return self.lengths.get(task, get_task(task).length)


PROFILES = {
    "smoke": Profile("smoke", ("minilm-l3",), ("sst2", "mrpc", "ner"), seeds=(42,), average_examples=64,
                     train_examples=64, dev_examples=64, epochs=2),
    "cpu": Profile("cpu", ("minilm-l3", "minilm-l6", "mpnet-base"), ("cola", "sst2", "mrpc", "mnli", "ner", "pos"),
                   seeds=(42, 43, 44), average_examples=2000, train_examples=2000, dev_examples=1000, epochs=15),
    "paper": Profile("paper", ("bert-base-uncased", "bert-large-uncased", "roberta-base", "roberta-large",
                               "microsoft/deberta-base", "microsoft/deberta-large"),
                     ("cola", "sst2", "mrpc", "mnli", "ner", "pos"), seeds=(42,), epochs=15),
}


def get_profile(name: str, models=None, tasks=None) -> Profile:
    """A profile by name, optionally narrowed to some models / tasks (comma-separated or lists)."""
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}")
    profile = PROFILES[name]
    split = lambda v: tuple(v.split(",")) if isinstance(v, str) else tuple(v)  # noqa: E731
    if models:
        profile = replace(profile, models=split(models))
    if tasks:
        for t in split(tasks):
            get_task(t)
        profile = replace(profile, tasks=split(tasks))
    return profile


@lru_cache(maxsize=2)
def cached_model(name: str):
    return load_model(name)


def task_data(task: str, split: str, n: int | None, seed: int = 0) -> TaskSplit:
    """A split, cut to a random subset of n examples (fixed seed, so every step sees the same examples)."""
    return load_task(task, split).sample(n, seed=seed)


def encoded(model_name: str, data: TaskSplit, length: int) -> Encoded:
    return encode(data, cached_model(model_name)[1], length)


def averages_path(run_dir: Path, model_name: str, task: str, length: int) -> Path:
    return Path(run_dir) / "averages" / f"{model_name.replace('/', '--')}__{task}__L{length}.safetensors"


def average_attention(run_dir: Path, profile: Profile, model_name: str, task: str) -> AttentionAverages:
    """Constant matrices of (model, task): loaded when already built from the same data, else computed."""
    length = profile.length(task)
    data = task_data(task, "train", profile.average_examples)
    path = averages_path(run_dir, model_name, task, length)
    model, _ = cached_model(model_name)
    if path.exists():
        found = AttentionAverages.load(path, model=model, length=length)
        if found.meta.get("data_checksum") == data.checksum and found.meta.get("examples") == len(data):
            return found
    start = time.time()
    result = compute_average_attention(model, encoded(model_name, data, length).batches(32), task=task,
                                       data_checksum=data.checksum, progress=progress_enabled())
    result.meta.update(seconds=round(time.time() - start, 2), data_note=data.note)
    result.save(path)
    return result


def example_attention(model_name: str, task: str, length: int, index: int = 0):
    """Attention [layers, heads, L, L] and the L tokens of one validation example in the PAPA layout."""
    import torch

    model, tokenizer = cached_model(model_name)
    e = encode(load_task(task, "validation").head(index + 1), tokenizer, length)
    with torch.no_grad():
        out = model(**e.model_inputs(slice(index, index + 1)), output_attentions=True)
    tokens = [t if m else "" for t, m in zip(tokenizer.convert_ids_to_tokens(e.input_ids[index].tolist()),
                                             e.attention_mask[index].tolist())]
    return torch.stack([a[0] for a in out.attentions]), tokens


def figures_dir(profile: Profile) -> Path:
    path = ROOT / "figures" / profile.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_notebooks(profile: Profile, run_dir: Path, notebooks=None) -> None:
    """Execute the notebooks in order with papermill; executed copies go to the run folder."""
    import papermill

    absolute_data_dir()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile.name, "models": ",".join(profile.models), "tasks": ",".join(profile.tasks),
              "run_dir": str(run_dir.resolve())}
    write_json(run_dir / "run.json", {"profile": asdict(profile), "parameters": params, **environment()})
    for name in notebooks or NOTEBOOKS:
        source = ROOT / "notebooks" / f"{name}.ipynb"
        if not source.exists():
            log.warning("notebook %s is not there yet; skipped", source.name)
            continue
        start = time.time()
        papermill.execute_notebook(str(source), str(run_dir / source.name), parameters=params,
                                   cwd=str(ROOT / "notebooks"), progress_bar=progress_enabled())
        print(f"{name}: {time.time() - start:.0f} s", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", help=f"one of {', '.join(PROFILES)}")
    parser.add_argument("--models", help="comma-separated subset of the profile's models")
    parser.add_argument("--tasks", help="comma-separated subset of the profile's tasks")
    parser.add_argument("--run-dir", help="default runs/<profile>")
    parser.add_argument("--notebooks", help="comma-separated subset, e.g. 01_average_attention")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        profile = get_profile(args.profile, args.models, args.tasks)
    except KeyError as e:
        sys.exit(str(e.args[0]))
    run_dir = Path(args.run_dir or ROOT / "runs" / profile.name)
    start = time.time()
    run_notebooks(profile, run_dir, args.notebooks.split(",") if args.notebooks else None)
    print(f"profile {profile.name}: done in {time.time() - start:.0f} s; run folder {run_dir}", flush=True)


if __name__ == "__main__":
    main()
