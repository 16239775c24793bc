"""The runner: a profile's notebooks in order through papermill, each (model, task) cell's steps first as jobs of an
executor (by default, on a run of every notebook, local processes one at a time: ``settings.choices.default_executor``),
and the command line (`python -m papa_utils.runner.pipeline --profile cpu`, which `make figures` calls).

Every step writes its result atomically under the run folder and is skipped when a result built from the
same inputs by the same numerical code is already there (``runs.cached_step``), so an interrupted run resumes
where it stopped; run.json lists every invocation that worked in the folder.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

from ..core.backbones import DECIDED_PRECISIONS, cached_model, precision_choice, precision_of, precision_record
from ..settings.choices import RANKINGS, default_executor
from ..core.device import model_device
from .executor import (EXECUTORS, CellsFailed, ExecutorError, cell_records, check_executor, default_workers,
                       run_cells, slurm_options)
from ..core.models import ModelNotAvailableError, describe, model_source
from ..settings.profiles import PROFILES, Profile, get_profile
from ..records.runs import (RECOMPUTED, ROOT, RunScopeError, absolute_data_dir, environment, git_state, invocations_of, invoking,
                   open_run, peak_memory_gb, progress_enabled, read_json, record_invocation, repo_relative, run_scope,
                   run_totals, write_json)
from ..records.memory import MemorySampler
from .steps import average_attention, feature_cache_gb, head_ranking
from .sweeps import compare_rankings, learning_curve, probe_sweep
from ..reports.tables import step_census, timing
from ..settings.tasks import DataError, load_task

NOTEBOOKS = ["00_anatomy_of_attention", "01_average_attention", "02_probe_baselines", "03_partial_replacement",
             "04_model_strength", "05_probe_strength", "06_gate_free_ranking"]


def cell_steps(run_dir: Path, profile: Profile, model_name: str, task: str, precision: str | None = None) -> dict:
    """Every step of one (model, task) cell, in the order the notebooks need them: averages (notebook 1) ->
    baseline and full PAPA (2) -> the head ranking and the sweep (3) -> the ranking's stability and the compared
    rankings (6) -> the learning curve where the cell has one (5). Each step is cached, so the notebooks find
    them done; this is what a job of ``executor.run_cells`` runs, with `precision` as the submitting process
    decided it (``precision_of`` there). Returns where it ran, {"device": the model's, "precision": its passes'}, and
    "feature_cache_gb": what the run folder's feature cache held after its averages (the most it holds during the
    cell, whose baseline features the k = 0 probes then use up)."""
    if precision is not None:
        DECIDED_PRECISIONS[model_name] = precision
    model, _ = cached_model(model_name)
    info = describe(model)
    total = info["layers"] * info["heads"]
    average_attention(run_dir, profile, model_name, task)
    cache_gb = feature_cache_gb(run_dir)
    probe_sweep(run_dir, profile, model_name, task, [0, total])
    ranking = head_ranking(run_dir, profile, model_name, task)
    probe_sweep(run_dir, profile, model_name, task, profile.sweep_counts(model_name, total), ranking["ranking"])
    compare_rankings(run_dir, profile, model_name, task)
    if model_name in profile.curve_models and task in profile.curve_tasks:
        learning_curve(run_dir, profile, model_name, task)
    return {"device": str(model_device(model)), "precision": precision_of(profile, model_name),
            "feature_cache_gb": cache_gb}


def check_inputs(profile: Profile) -> None:
    """What a run needs before its first notebook: every task's training and dev data (found and checked against
    their checksums, ``tasks.load_task``) and every model (``models.model_source``; no weights loaded). Raises
    ``DataError`` or ``ModelNotAvailableError`` saying what is missing and how to get it."""
    for task in profile.tasks:
        for split in ("train", "validation"):
            load_task(task, split)
    for model_name in profile.models:
        model_source(model_name)


def run_notebooks(profile: Profile, run_dir: Path | None = None, notebooks=None, executor: str = "inprocess",
                  cells_seconds: float | None = None, started: float | None = None,
                  memory: MemorySampler | None = None) -> Path:
    """Execute the notebooks in order with papermill into the run folder (``open_run``): executed copies,
    results and figures all go there. With an `executor` other than "inprocess", the cells' steps were run as
    jobs first (``executor.run_cells``, which took `cells_seconds`; the invocation `started` before them, and
    `memory` has sampled the process tree since) and the notebooks find them done.

    The run folder's run.json lists every invocation that worked in it (``invocation_record``): this one is
    recorded when it starts, after each notebook and when it ends, interrupted or not. Its "wall_seconds" and
    "peak_memory_gb" are the run's (``runs.run_totals``): summed over the invocations, the largest of them; a run
    has a wall time only once an invocation finished. Returns the run folder."""
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
    started, seconds = started or time.time(), {}
    # the feature cache is measured after each notebook, and by each cell's job this invocation ran (``cell_steps``)
    cache_gb = [] if executor == "inprocess" else [
        c["feature_cache_gb"] for c in cell_records(run_dir).values()
        if c.get("feature_cache_gb") is not None and (c.get("started") or 0) >= started]
    progress, before = progress_enabled(), os.environ.get("PAPA_PROGRESS")
    os.environ["PAPA_PROGRESS"] = "0"  # the kernels: an executed notebook keeps no progress bar (one drawn as a
    # widget or with carriage returns is saved at its first frame)
    # the notebooks' kernels and the cells' local jobs descend from this process: the sampler sees their memory
    with (invoking(os.environ.get("PAPA_INVOCATION")) as name,
          nullcontext(memory) if memory is not None else MemorySampler() as memory):

        def note(finished: bool, starting: bool = False) -> None:
            memory.sample()
            record_invocation(run_dir, invocation_record(name, started, seconds, executor, cells_seconds, finished,
                                                         memory.peak(), max(cache_gb, default=0.0)), starting)

        write_json(run_dir / "run.json", {**(read_json(run_dir / "run.json") or {}), **recorded, **environment()})
        note(False, starting=True)
        finished = False
        try:
            for notebook in notebooks or NOTEBOOKS:
                source = ROOT / "notebooks" / f"{notebook}.ipynb"
                start = time.time()
                papermill.execute_notebook(str(source), str(run_dir / source.name), parameters=params,
                                           cwd=str(ROOT / "notebooks"), progress_bar=progress)
                seconds[notebook] = round(time.time() - start, 1)
                cache_gb.append(feature_cache_gb(run_dir))  # in-process: largest right after notebook 1, which fills it
                print(f"{notebook}: {seconds[notebook]:.0f} s", flush=True)
                note(False)
            finished = True
        finally:
            if before is None:
                os.environ.pop("PAPA_PROGRESS")
            else:
                os.environ["PAPA_PROGRESS"] = before
            note(finished)  # an interrupted invocation keeps its record, with its wall time so far
        *earlier, this = invocations_of(read_json(run_dir / "run.json"))
        invocations = [{**i, "steps": {**step_census(run_dir, i["invocation"]), "reused": None}}  # interrupted ones:
                       if not i.get("finished") and i.get("invocation") else i for i in earlier]  # what they computed
        invocations.append({**this, "steps": step_census(run_dir, name)})
    if executor != "inprocess":  # where and how long each cell's job ran
        recorded.update(cells=cell_records(run_dir))
    meta = {**recorded, "invocations": invocations, "notebooks": list(seconds), "notebook_seconds": seconds,
            **run_totals(invocations), "step_seconds": timing(run_dir, profile),
            "feature_cache_gb": cache_record(read_json(run_dir / "run.json"), invocations, feature_cache_gb(run_dir)),
            **environment()}
    write_json(run_dir / "run.json", meta)
    steps = invocations[-1]["steps"]
    again = ", ".join(f"{n} because it {RECOMPUTED[why]}" if n == 1 else f"{n} because they "
                      f"{RECOMPUTED[why].replace('is ', 'are ').replace('was ', 'were ')}"
                      for why, n in steps["recomputed"].items())
    print(f"this invocation computed {steps['computed']} steps{f' ({again})' if again else ''} and found "
          f"{steps['reused']} done; run.json lists the run folder's {len(invocations)} invocation"
          f"{'s' * (len(invocations) != 1)}", flush=True)
    return run_dir


def cache_record(earlier_run: dict | None, invocations: list, at_the_end: float) -> dict:
    """The run folder's feature cache for run.json: the largest it held over every invocation, interrupted ones
    included (each records its own largest, after every notebook and from its cells' jobs; an invocation that finds
    the averages done never fills the cache, so its own samples alone would hide an earlier one's), beside the
    largest an earlier run.json recorded before invocations kept their own, and what is left at the end."""
    earlier = ((earlier_run or {}).get("feature_cache_gb") or {}).get("largest", 0.0)
    return {"largest": max([earlier, *(i.get("feature_cache_gb") or 0.0 for i in invocations)]),
            "at_the_end": at_the_end}


def invocation_record(name: str, started: float, notebook_seconds: dict, executor: str,
                      cells_seconds: float | None, finished: bool, memory: dict | None = None,
                      cache_gb: float = 0.0) -> dict:
    """One invocation as run.json lists it: its name, the commit and state of the tree, when it started, the
    notebooks it executed and how long each took, how long it waited for the cells' jobs, its wall time so far (from
    its start, the jobs included), its peak memory (the largest process's, and `memory`: the invocation's process
    tree, its jobs and notebooks, split into anonymous and file-backed pages, ``memory.MemorySampler.peak``), the
    most the feature cache held after any of its notebooks or cells' averages, and whether it finished."""
    state = git_state()
    wall = time.time() - started
    return {"invocation": name, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            **state, "executor": executor, "notebooks": list(notebook_seconds), "notebook_seconds": notebook_seconds,
            "cells_wall_seconds": cells_seconds, "wall_seconds": round(wall, 1), "peak_memory_gb": peak_memory_gb(),
            **({"memory": memory} if memory else {}), "feature_cache_gb": round(cache_gb, 3), "finished": finished}


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
    parser.add_argument("--executor",
                        help=f"how each (model, task) cell's steps run: {', '.join(EXECUTORS)} (inprocess: inside the "
                             f"notebooks; local: each cell a separate process; slurm: Slurm jobs). Default: local when "
                             f"every notebook runs, inprocess with --notebooks")
    parser.add_argument("--workers", type=int, help="local executor: cells run at the same time (default: one per GPU, "
                                                    "else one)")
    parser.add_argument("--slurm-config", help="YAML file of Slurm options (partition, gpus_per_node, "
                                               "cpus_per_task, mem_gb, timeout_min, account, qos, ...)")
    parser.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                        help="one Slurm option, over the file's (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        profile = get_profile(args.profile, args.models, args.tasks, args.ranking, args.passes)
        executor = check_executor(args.executor or default_executor(not args.notebooks))
        options = slurm_options(args.slurm_config, args.slurm) if executor == "slurm" else {}
        workers = default_workers() if args.workers is None else args.workers
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
    except KeyError as e:
        sys.exit(str(e.args[0]))
    except (ValueError, ExecutorError) as e:
        sys.exit(str(e))
    start = time.time()
    try:
        absolute_data_dir()
        check_inputs(profile)  # before anything is written: a missing model or data folder says so at once
        run_dir = open_run(args.run_dir, profile).resolve()
        cells_start = time.time()
        with invoking() as name, MemorySampler() as memory:  # the cells' jobs and the notebooks are one invocation
            if executor != "inprocess":  # decided here, once, for every job and notebook of the run
                record_invocation(run_dir, invocation_record(name, cells_start, {}, executor, None, False),
                                  starting=True)  # listed before its jobs, in case it is interrupted among them
                try:
                    run_cells(cell_steps, run_dir, profile, executor, workers, options,
                              precisions={m: precision_of(profile, m) for m in profile.models})
                except BaseException:  # failed or interrupted among the jobs: its record keeps the memory they took
                    record_invocation(run_dir, invocation_record(name, cells_start, {}, executor, None, False,
                                                                 memory.peak()))
                    raise
            run_dir = run_notebooks(profile, run_dir, args.notebooks.split(",") if args.notebooks else None,
                                    executor, round(time.time() - cells_start, 1) if executor != "inprocess" else None,
                                    started=cells_start, memory=memory)
    except (RunScopeError, CellsFailed, ExecutorError, DataError, ModelNotAvailableError) as e:
        # (ExecutorError: e.g. GPUs local jobs cannot be given; DataError, ModelNotAvailableError: ``check_inputs``)
        sys.exit(str(e))
    print(f"profile {profile.name}: done in {time.time() - start:.0f} s; results and figures in "
          f"{repo_relative(run_dir)}/; publish them as the README's with `make publish RUN_DIR={repo_relative(run_dir)}`",
          flush=True)


if __name__ == "__main__":  # run the module's own main, so that what jobs unpickle is papa_utils.runner.pipeline's
    from papa_utils.runner.pipeline import main as module_main

    module_main()
