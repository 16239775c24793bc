"""The grid's cells as jobs: each (model, task) cell runs its steps (``pipeline.cell_steps``: averages ->
baseline -> ranking -> sweep, and what notebooks 5 and 6 compute for it) as one job through submitit, into the shared run folder, whose cached and atomic
step results make parallel cells safe; the notebooks then run on the submitting machine, find every step done,
and draw.

Executors (``EXECUTORS``): "inprocess" (no jobs, the notebooks compute every step themselves), "local" (each cell
a separate process on this machine, at most `workers` at a time, through submitit's local executor) and "slurm" (each
cell a Slurm job; options from a YAML file and/or key=value pairs, ``slurm_options``). ``default_executor`` says
which a run takes when none is asked for.

A cell is done when its marker <run>/cells/<model>__<task>.json holds the profile's settings (``cell_key``);
a rerun submits only the cells that are not done. A failed or timed-out job is reported with its cell and the
path of its log.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import signal
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path

from ..core.device import accelerator_count
from ..records.runs import code_digest, invocation, peak_memory_gb, write_json
from ..settings.choices import EXECUTORS

log = logging.getLogger("papa_utils")

SLURM_COMMANDS = ("sbatch", "srun", "sacct", "scancel")  # what submitit calls: submit, run, watch, cancel

# Slurm options (YAML keys and `--slurm key=value`): submitit's generic names, and Slurm's own for the rest
SLURM_KEYS = {"partition": "slurm_partition", "account": "slurm_account", "qos": "slurm_qos",
              "constraint": "slurm_constraint", "gpus_per_node": "gpus_per_node", "cpus_per_task": "cpus_per_task",
              "mem_gb": "mem_gb", "timeout_min": "timeout_min", "additional": "slurm_additional_parameters"}
# one cell of the paper profile on one GPU: BERT-large on MNLI is the longest (docs/paper_profile.md)
SLURM_DEFAULTS = {"gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 64, "timeout_min": 48 * 60}
LOCAL_TIMEOUT_MIN = 60 * 24 * 60  # no limit in practice: a local job runs until its cell is done


class ExecutorError(RuntimeError):
    """An executor that cannot run here, or options it does not know."""


class CellsFailed(RuntimeError):
    """Some cells' jobs failed or timed out; the message names each with its log."""


def default_workers() -> int:
    """Local jobs at a time when a run does not say: one per GPU, else one (a job's torch threads use every core;
    two jobs side by side would each hold a cell's features)."""
    return max(1, accelerator_count())


def check_executor(name: str) -> str:
    """`name` if it is an executor that can run here, else an ExecutorError that says what to do."""
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor {name!r}; executors: {', '.join(EXECUTORS)}")
    if name == "slurm":
        missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
        if missing:
            raise ExecutorError(
                f"EXECUTOR=slurm needs Slurm's {', '.join(f'`{c}`' for c in missing)} command"
                f"{'s' if len(missing) > 1 else ''}, not found on PATH here. Run from a Slurm login node, or run "
                f"the same jobs as local processes with EXECUTOR=local (`--executor local`).")
    return name


SLURM_TYPES = {"gpus_per_node": int, "cpus_per_task": int, "mem_gb": (int, float), "timeout_min": int,
               "additional": dict}  # the others are names (text)


def slurm_options(config_file: str | Path | None = None, pairs=()) -> dict:
    """submitit parameters for Slurm jobs: ``SLURM_DEFAULTS``, then the YAML file's keys, then `pairs`
    ("key=value" strings, e.g. from the SLURM_* make variables); keys as in ``SLURM_KEYS``, values checked
    (``SLURM_TYPES``: numbers where Slurm takes numbers, e.g. timeout_min in minutes, not "48:00:00")."""
    given = {}
    if config_file:
        import yaml

        path = Path(config_file).expanduser()
        if not path.exists():
            raise ExecutorError(f"Slurm options file {path} does not exist (SLURM_CONFIG / --slurm-config)")
        given = yaml.load(path.read_text(), Loader=yaml.BaseLoader) or {}  # text as written: no base-60 48:00:00
        if not isinstance(given, dict):
            raise ExecutorError(f"Slurm options file {path} must be a mapping of options, e.g. `partition: gpu`")
        given = {k: _as_written(k, v) for k, v in given.items()}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ExecutorError(f"Slurm option {pair!r} is not key=value (e.g. partition=gpu)")
        if value == "":
            continue  # an unset make variable
        given[key.strip()] = _as_written(key.strip(), value.strip())
    unknown = sorted(set(given) - set(SLURM_KEYS))
    if unknown:
        raise ExecutorError(f"unknown Slurm option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                            f"options: {', '.join(SLURM_KEYS)} (`additional` takes any other sbatch option as a "
                            f"mapping)")
    for key, value in given.items():
        kind = SLURM_TYPES.get(key, str)
        if kind is str:
            given[key] = value = str(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            what = {int: "a whole number", dict: "a mapping of sbatch options", str: "a name"}.get(kind, "a number")
            raise ExecutorError(f"Slurm option {key} must be {what}"
                                f"{' of minutes' if key == 'timeout_min' else ''}{' of GB' if key == 'mem_gb' else ''}"
                                f", got {value!r}")
    options = {**SLURM_DEFAULTS, **given}
    return {SLURM_KEYS[k]: v for k, v in options.items()}


def _as_written(key: str, value):
    """An option's value as written (text from the file's BaseLoader or the command line): a number for the numeric
    keys, a mapping for `additional` (YAML on the command line), text for names ("0123" is an account)."""
    if not isinstance(value, str):
        return value
    if key == "additional":
        import yaml

        return yaml.safe_load(value)
    return _number(value) if key in SLURM_TYPES else value


def _number(text: str):
    """A number (an int where it is one), else the text, for the type check."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def cell_name(model_name: str, task: str) -> str:
    return f"{model_name.replace('/', '--')}__{task}"


def cell_key(profile) -> dict:
    """What a finished cell was computed under: the profile's settings except which models and tasks it covers, and
    the numerical code (``runs.code_digest``): after a change of that code no cell counts as done."""
    settings = asdict(profile)
    for name in ("models", "tasks", "curve_models", "curve_tasks", "compare_models"):
        settings.pop(name)
    return {**json.loads(json.dumps(settings, default=str)), "code": code_digest()}


def marker_path(run_dir: Path, model_name: str, task: str) -> Path:
    return Path(run_dir) / "cells" / f"{cell_name(model_name, task)}.json"


def cell_done(run_dir: Path, profile, model_name: str, task: str) -> bool:
    try:
        found = json.loads(marker_path(run_dir, model_name, task).read_text())
    except (OSError, ValueError):
        return False
    return found.get("settings") == cell_key(profile)


def run_cell(steps, run_dir: str, profile, model_name: str, task: str, threads: int | None = None,
             precision: str | None = None, invocation: str | None = None) -> dict:
    """One job: `steps(run_dir, profile, model_name, task, precision)` (``pipeline.cell_steps``, which returns
    where it ran: device, precision) into the run folder, then the cell's marker. `precision`: the model's, as the
    submitting process decided it for every job and notebook of the run; `invocation`: the invocation the steps
    record (``runs.invocation``), handed over rather than inherited, since a cluster need not pass the environment
    on. Returns the marker."""
    import torch

    if invocation:
        os.environ["PAPA_INVOCATION"] = invocation
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ["PAPA_PROGRESS"] = "0"  # no progress bars in a job's log
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if os.environ.get("PAPA_DEVICE", "").startswith("cuda:") and visible and "," not in visible:
        os.environ["PAPA_DEVICE"] = "cuda"  # a local job sees its one GPU as cuda:0
    if threads:
        torch.set_num_threads(threads)
    start = time.time()
    where = steps(Path(run_dir), profile, model_name, task, precision)
    marker = {"model": model_name, "task": task, "settings": cell_key(profile), "started": round(start, 1),
              "finished": round(time.time(), 1), "seconds": round(time.time() - start, 1), "host": platform.node(),
              "peak_memory_gb": peak_memory_gb(), **where,
              "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID") or str(os.getpid())}
    write_json(marker_path(run_dir, model_name, task), marker)
    return marker


def _executor(kind: str, folder: Path, options: dict, gpus: int):
    import submitit

    if kind == "local":  # one GPU per job where there are GPUs (``visible_gpus`` in turn), else none
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=options.get("timeout_min", LOCAL_TIMEOUT_MIN),
                                   signal_delay_s=options.get("signal_delay_s", 30), gpus_per_node=1 if gpus else 0)
    else:
        executor = submitit.AutoExecutor(folder=str(folder), cluster=kind)
        executor.update_parameters(name="papa-cell", **options)
    return executor


def job_path(run_dir: Path, model_name: str, task: str) -> Path:
    """Which job a cell was last submitted as (executor, job id): a rerun waits for it while it is queued or
    running instead of submitting the cell again."""
    return Path(run_dir) / "cells" / f"{cell_name(model_name, task)}.job"


def _still_active(run_dir: Path, jobs_dir: Path, executor: str, cell):
    """The Slurm job a cell was submitted as, when it is still queued or running (a rerun after the submitting
    process died), else None. Local jobs end with the process that started them."""
    if executor != "slurm":
        return None
    try:
        found = json.loads(job_path(run_dir, *cell).read_text())
    except (OSError, ValueError):
        return None
    import submitit

    job = submitit.SlurmJob(folder=jobs_dir, job_id=str(found["job_id"]))
    return None if job.done() else job  # done: its result is there, or Slurm says it is no longer queued or running


def run_cells(steps, run_dir: Path, profile, executor: str, workers: int = 2, options: dict | None = None,
              poll_seconds: float | None = None, precisions: dict | None = None) -> dict:
    """Submit every cell of `profile` that is not done as a job of `executor` ("local": at most `workers` at a
    time, each with a GPU no running job uses where there are GPUs; "slurm": all at once, Slurm queues them)
    running `steps` (``run_cell``) with each model's precision from `precisions`, and wait for them; a cell whose
    Slurm job from an earlier submission is still queued or running is waited for, not submitted again. Returns
    {cell name: marker} of the cells this call waited for. Raises CellsFailed naming each failed or timed-out cell
    with its log; Ctrl-C cancels the jobs it waits for."""
    run_dir = Path(run_dir)
    check_executor(executor)
    if executor == "inprocess":
        return {}
    options, precisions = dict(options or {}), dict(precisions or {})
    cells = [(m, t) for m in profile.models for t in profile.tasks]
    todo = [c for c in cells if not cell_done(run_dir, profile, *c)]
    jobs_dir = run_dir / "jobs"
    running = {c: (job, None) for c in todo if (job := _still_active(run_dir, jobs_dir, executor, c))}
    pending = [c for c in todo if c not in running]
    print(f"{len(cells) - len(todo)} of {len(cells)} cells done"
          + (f"; {len(running)} still queued or running from an earlier submission, waiting for them" if running else "")
          + f"; submitting {len(pending)} to {executor}" + (f" ({workers} at a time)" if executor == "local" else ""),
          flush=True)
    if not todo:
        return {}
    _prepare_models(profile)
    gpus = visible_gpus() if executor == "local" else []
    submitter = _executor(executor, jobs_dir, options, len(gpus))
    threads = max(1, (os.cpu_count() or 1) // workers) if executor == "local" else None
    poll = poll_seconds if poll_seconds is not None else (1.0 if executor == "local" else 30.0)
    limit = workers if executor == "local" else len(todo)
    finished, failed = {}, {}
    terminating = ExitStack()
    terminating.enter_context(_terminating_cancels_jobs())
    try:
        while pending or running:
            while pending and len(running) < limit:
                cell = pending.pop(0)
                gpu = _least_used([g for _, g in running.values() if g is not None], gpus) if gpus else None
                if gpu is not None:  # one GPU per local job: the one fewest running jobs use
                    submitter.update_parameters(visible_gpus=(gpu,))
                with _starting_a_job():  # an interrupt meanwhile is held until the job is recorded
                    job = submitter.submit(run_cell, steps, str(run_dir), profile, *cell, threads,
                                           precisions.get(cell[0]), invocation())
                    write_json(job_path(run_dir, *cell), {"executor": executor, "job_id": job.job_id,
                                                          "submitted": round(time.time(), 1)})
                    running[cell] = (job, gpu)
                print(f"  {cell[0]} x {cell[1]}: job {job.job_id}, log {job.paths.stderr}", flush=True)
            for cell, (job, _) in list(running.items()):
                if not job.done():
                    continue
                del running[cell]
                error = job.exception()
                if error is None:
                    finished[cell_name(*cell)] = marker = job.result()
                    print(f"  {cell[0]} x {cell[1]}: done in {marker['seconds']:.0f} s", flush=True)
                else:
                    failed[cell] = (job, _why(job, error, executor))
                    print(f"  {cell[0]} x {cell[1]}: {failed[cell][1]}", flush=True)
            if running:
                _pause(poll)
    except KeyboardInterrupt:
        jobs = [job for job, _ in running.values()]
        for job in jobs:
            job.cancel(check=False)
        if executor == "local":
            _wait_until_ended(jobs)
        print(f"interrupted: cancelled {len(running)} job(s); finished cells are kept", flush=True)
        raise
    finally:
        terminating.close()
    if failed:
        lines = [f"- {m} x {t}: {why}; log: {job.paths.stderr}" for (m, t), (job, why) in failed.items()]
        raise CellsFailed(f"{len(failed)} of {len(todo)} cells did not finish:\n" + "\n".join(lines) +
                          f"\n{len(cells) - len(failed)} of {len(cells)} cells are done and kept; run the same "
                          f"command again to resubmit only the unfinished ones.")
    return finished


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def _interrupted(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def _terminating_cancels_jobs():
    """While jobs run, a termination (SIGTERM, `kill`) takes the same path as Ctrl-C: the jobs are cancelled."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _starting_a_job():
    """Where a job starts and is recorded. A local job is cancelled with an interrupt (SIGINT), and a process
    inherits whether it ignores one: started in the background by a non-interactive shell (`make figures … &`,
    nohup), this process ignores interrupts and so would its jobs, which could then never be cancelled. Inside the
    block both signals are caught here, so a job starts with the default handling of each; an interrupt or a
    termination that arrives meanwhile is held and raised once the block has recorded the job (an ignored
    interrupt stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    heard = []
    previous = {sig: signal.signal(sig, lambda signum, frame: heard.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if any(previous[sig] not in (signal.SIG_IGN, None) for sig in heard):
        raise KeyboardInterrupt


def _wait_until_ended(jobs, resend_seconds: float = 2.0, limit_seconds: float = 60.0) -> None:
    """Wait until cancelled local jobs have ended. A local cancel is an interrupt sent to the job's process, which
    returns at once; an interrupt that reaches a process still starting up can be lost, so it is sent again every
    `resend_seconds` until the process ends (at most `limit_seconds`, then the jobs still running are named)."""
    start = last = time.monotonic()
    while (alive := [job for job in jobs if not job.done()]) and time.monotonic() - start < limit_seconds:
        if time.monotonic() - last >= resend_seconds:
            for job in alive:
                job.cancel(check=False)
            last = time.monotonic()
        time.sleep(0.05)
    if alive:
        print(f"warning: {len(alive)} cancelled job(s) still running after {limit_seconds:.0f} s: "
              + ", ".join(str(job.job_id) for job in alive), flush=True)


def visible_gpus() -> list[int]:
    """The GPUs local jobs may be given, as CUDA_VISIBLE_DEVICES numbers them for the whole machine (the
    submitting process's own CUDA_VISIBLE_DEVICES when it is set, so a job never gets a GPU it was not allowed)."""
    count = accelerator_count()
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if not listed:
        return list(range(count))
    if not all(g.isdigit() for g in listed):
        raise ExecutorError(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} names GPUs that local jobs "
                            f"cannot be given (submitit takes GPU numbers): list them by number, e.g. 0,1")
    return [int(g) for g in listed][:count]


def _why(job, error: BaseException, executor: str) -> str:
    """Why a job did not finish: the error its cell raised, or that it stopped before finishing (with Slurm's
    state: TIMEOUT, CANCELLED, OUT_OF_MEMORY, ...)."""
    from submitit.core.utils import FailedJobError

    raised = _first_line(error)
    if isinstance(error, FailedJobError) and "UncompletedJobError" not in raised:
        return f"failed: {raised}"
    if "timed-out" in raised:  # submitit's own words when the time limit stopped the job
        return "timed out"
    state = f"{job.state}: " if executor == "slurm" else ""
    return f"stopped before it finished ({state}timed out, cancelled or killed)"


def _least_used(used: list, gpus: list) -> int:
    """The GPU of `gpus` that the fewest running jobs use; the first of those."""
    return min(gpus, key=lambda g: (used.count(g), gpus.index(g)))


def _first_line(error: BaseException) -> str:
    """The error a job's function raised (the last line of the traceback submitit reports), else its message."""
    text = str(error).strip().splitlines()
    raised = [line for line in text if line and not line.startswith((" ", "Traceback", "-", "Job ", "has not",
                                                                     "Error stream", "You can check", "or at paths"))]
    return (raised[-1] if raised else text[0] if text else type(error).__name__)[:300]


def _prepare_models(profile) -> None:
    """Build the models made on this machine (offline names, ``choices.TINY_RANDOM``) once, before jobs that load
    them in parallel (``models.ensure_model``); Hub models are fetched by the jobs (the Hub's cache locks)."""
    from ..core.models import ensure_model

    for name in profile.models:
        ensure_model(name)


def cell_records(run_dir: Path) -> dict:
    """The markers of a run's finished cells, for run.json: {cell name: {seconds, started, finished, host,
    peak_memory_gb (the job's own process), feature_cache_gb (``pipeline.cell_steps``), device, precision,
    job_id}}."""
    records = {}
    for path in sorted((Path(run_dir) / "cells").glob("*.json")):
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        records[path.stem] = {k: found.get(k) for k in ("seconds", "started", "finished", "host",
                                                        "peak_memory_gb", "feature_cache_gb", "device", "precision",
                                                        "job_id")}
    return records
