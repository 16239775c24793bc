"""The one place where run artefacts are written: atomic files, cached steps, run folders, run metadata."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ..settings.profiles import PROFILES, Profile, get_profile

ROOT = Path(__file__).resolve().parents[2]


def absolute_data_dir() -> None:
    """Make a relative $PAPA_DATA_DIR absolute (notebooks run in notebooks/, not where the user started)."""
    value = os.environ.get("PAPA_DATA_DIR")
    if value and not Path(value).expanduser().is_absolute():
        os.environ["PAPA_DATA_DIR"] = str(Path(value).expanduser().resolve())


def progress_enabled() -> bool:
    """Progress bars on, unless PAPA_PROGRESS=0 (CI)."""
    return os.environ.get("PAPA_PROGRESS", "1") not in ("0", "false", "")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(path: str | Path, folder: bool = False):
    """Yield a temporary path next to `path` (an empty folder when `folder`); it becomes `path` only if the
    block finishes, so an interrupted write never leaves a half-written artefact under the real name.
    Every artefact of the project (results, figures, averages, features, converted models) is written
    through here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{platform.node()}.{os.getpid()}.tmp")  # unique across the nodes of a cluster
    _remove(tmp)
    if folder:
        tmp.mkdir()
    try:
        yield tmp
        if folder and path.exists():  # os.replace cannot put a folder over a non-empty one
            _remove(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def strict_json(value):
    """`value` as plain JSON values: a NaN or infinite number becomes null (JSON has neither), numpy scalars
    and arrays become numbers and lists, tuples lists."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars and arrays
        return strict_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data) -> Path:
    """`data` as strict JSON (``strict_json``: null, never NaN), written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(strict_json(data), indent=1, sort_keys=True, default=str, allow_nan=False))
    return Path(path)


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=True).stdout


def git_state(root: Path = ROOT) -> dict:
    """The commit the code is at, whether the work tree differs from it (tracked changes or untracked files
    that are not ignored) and, if so, a sha256 of that difference (the diff against HEAD, then every
    untracked file's name and content), so two runs from the same dirty tree can be told apart."""
    try:
        commit = _git(root, "rev-parse", "HEAD").decode().strip()
        diff = _git(root, "diff", "HEAD", "--binary")
        untracked = [name for name in _git(root, "ls-files", "--others", "--exclude-standard", "-z").split(b"\0")
                     if name]
    except Exception:
        return {"git_commit": "unknown", "dirty": None, "diff_sha256": None}
    if not diff and not untracked:
        return {"git_commit": commit, "dirty": False, "diff_sha256": None}
    digest = hashlib.sha256(diff)
    for name in sorted(untracked):
        digest.update(b"\0untracked\0" + name + b"\0")
        path = root / name.decode()
        # a symbolic link (to a linked .venv or data folder, say) is its target's name, not what it points to
        digest.update(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
    return {"git_commit": commit, "dirty": True, "diff_sha256": digest.hexdigest()}


def repo_relative(path: str | Path) -> str:
    """A path as recorded in run artefacts: relative to the repository (``../shared/data``, ``runs/cpu``), so
    committed artefacts never hold one machine's absolute paths."""
    return Path(os.path.relpath(Path(path).resolve(), ROOT)).as_posix()


class RunScopeError(RuntimeError):
    """A run would overwrite the results of a run that covers more."""


def covers(wide: dict, narrow: dict) -> bool:
    """Whether a run over scope `wide` includes everything of a run over `narrow`: same profile, same head ranking
    (scopes recorded before rankings had a choice are the gates'), same backbone passes (scopes recorded before
    passes had a choice are padded), and every model, task and seed of `narrow`."""
    return wide["profile"] == narrow["profile"] and _ranking(wide) == _ranking(narrow) and _passes(wide) == _passes(
        narrow) and all(set(narrow[part]) <= set(wide[part]) for part in ("models", "tasks", "seeds"))


def _ranking(scope: dict) -> str:
    return scope.get("ranking", "gates")


def _passes(scope: dict) -> str:
    return scope.get("passes", "padded")


def describe_scope(scope: dict) -> str:
    return (f"profile {scope['profile']}: models {', '.join(scope['models'])}; tasks {', '.join(scope['tasks'])}; "
            f"seeds {', '.join(map(str, scope['seeds']))}; heads ranked by {_ranking(scope)}; {_passes(scope)} passes")


def claim_run_folder(run_dir: str | Path, scope: dict) -> Path:
    """Record that `run_dir` holds a run over `scope` (in its run.json), refusing a folder that holds a run
    over a scope this one does not cover: its results would be overwritten by narrower ones."""
    run_dir = Path(run_dir)
    record = run_dir / "run.json"
    found = None
    if record.exists():
        found = json.loads(record.read_text()).get("scope")
    if found is not None and not covers(scope, found):
        raise RunScopeError(
            f"run folder {run_dir} holds a run over {describe_scope(found)}. This run covers {describe_scope(scope)}, "
            f"so it would overwrite those results with fewer. Leave RUN_DIR unset (a narrowed run gets its own "
            f"folder under runs/), choose another RUN_DIR, or delete {run_dir} if its results are not needed.")
    if found != scope:
        existing = json.loads(record.read_text()) if record.exists() else {}
        existing.pop("wall_seconds", None)  # a wider scope is not finished until a run over it finishes
        write_json(record, {**existing, "scope": scope})
    return run_dir


def peak_memory_gb() -> float:
    """Peak resident memory (GB) of this process and of its finished children (e.g. notebook kernels)."""
    import resource

    kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return round(kb / 1024 ** 2, 2)


def run_totals(invocations: list[dict]) -> dict:
    """A run's wall time and peak memory from its invocations (run.json's "invocations"): walls summed, the largest
    peak; "memory", where some invocation sampled it: the largest anonymous and resident memory of any of them, the
    file pages at the largest resident, and how many invocations sampled it; "walls_recorded" False when some invocation's wall is not known in full (not recorded, or interrupted:
    then it runs to its last finished notebook), so that the sum is a lower bound."""
    walls = [i.get("wall_seconds") for i in invocations]
    split = [i["memory"] for i in invocations if i.get("memory")]
    memory = {"memory": {key: max(m[key] for m in split) for key in ("anonymous_gb", "resident_gb")} |
              {"file_backed_gb": max(split, key=lambda m: m["resident_gb"])["file_backed_gb"],
               "invocations": len(split)}} if split else {}
    return {"wall_seconds": round(sum(w for w in walls if w is not None), 1),
            "peak_memory_gb": max((i.get("peak_memory_gb") or 0.0 for i in invocations), default=0.0),
            **memory, "walls_recorded": None not in walls and all(i.get("finished", True) for i in invocations)}


def invocations_of(run: dict) -> list[dict]:
    """The invocations a run.json lists; for one written before run.json listed them, its one finished invocation
    rebuilt from the top-level record (commit, tree, notebooks, wall time, peak; its steps unknown)."""
    if "invocations" in run or "wall_seconds" not in run:
        return list(run.get("invocations", []))
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(
        time.mktime(time.strptime(run["time"], "%Y-%m-%dT%H:%M:%S%z")) - run["wall_seconds"])) if run.get("time") else None
    return [{"invocation": None, "started": started, "git_commit": run.get("git_commit"), "dirty": run.get("dirty"),
             "diff_sha256": run.get("diff_sha256"), "executor": run.get("executor", "inprocess"),
             "notebooks": run.get("notebooks", []), "notebook_seconds": run.get("notebook_seconds", {}),
             "cells_wall_seconds": run.get("cells_wall_seconds"), "wall_seconds": run["wall_seconds"],
             "peak_memory_gb": run.get("peak_memory_gb"), "finished": True, "steps": None}]


def record_invocation(run_dir: Path, entry: dict, starting: bool = False) -> None:
    """Put `entry` (one invocation, ``pipeline.invocation_record``) into the run folder's run.json, in place of the
    record of the same invocation or after the others. A starting invocation takes the run's wall time away: the
    run is not finished until it finishes."""
    record = Path(run_dir) / "run.json"
    run = read_json(record) or {}
    listed = [i for i in invocations_of(run) if i.get("invocation") is None or i["invocation"] != entry["invocation"]]
    if starting:
        run.pop("wall_seconds", None)
    write_json(record, {**run, "invocations": listed + [entry]})


def environment() -> dict:
    import importlib.metadata as md

    versions = {}
    for dist in ("torch", "transformers", "datasets", "numpy", "pandas", "papermill"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "packages": versions, **git_state(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


# Cached steps. A step writes its result atomically under the run folder with a fingerprint of its inputs (what
# it is computed from: examples, settings, the steps it builds on; never timings) and a digest of the code that
# computed it (``code_digest``), and is skipped when a result with the same fingerprint and code is there: an
# interrupted run resumes where it stopped, a changed input or changed numerical code is computed again. Tables only
# read what the steps stored: a result they need and do not find names the notebook that makes it
# (``MissingStepError``).

# The modules whose code can change a step's numbers: data and models, the backbone's passes and the hooking, the
# averages, probes, head scores, references and metrics, and the steps and sweeps themselves. Tables, verdicts,
# figures, publishing, the pipeline and executor, and the teaching helpers cannot, and changing them keeps every step.
NUMERICAL_CODE = ("core.averages", "core.backbones", "core.device", "core.features", "core.head_scores", "core.hooks",
                  "core.layout", "core.metrics", "core.models", "core.packing", "core.probe", "core.references",
                  "core.replace", "runner.steps", "runner.sweeps", "settings.tasks")
# the packages whose versions can change them too: the backbone, the tokenizers, the model conversion, the arrays and
# the metrics
NUMERICAL_PACKAGES = ("torch", "transformers", "tokenizers", "onnx", "numpy", "scipy", "scikit-learn", "seqeval")


def _code_of(path: Path) -> bytes:
    """What a module computes with: its syntax tree without docstrings (a comment or a docstring changes no number)."""
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


@functools.lru_cache(maxsize=None)
def code_digest(package: Path = Path(__file__).parents[1]) -> str:
    """sha256 (16 hex digits) of the code of ``NUMERICAL_CODE`` (in `package`, by default this one; comments and
    docstrings left out) and the versions of ``NUMERICAL_PACKAGES``: what every step records as the code that
    computed it. ``steps`` computes it when it is imported, so that it is read from the files the process imports."""
    import importlib.metadata as md

    digest = hashlib.sha256()
    for name in NUMERICAL_CODE:
        digest.update(f"\0{name}\0".encode() + _code_of(package.joinpath(*name.split(".")).with_suffix(".py")))
    for dist in NUMERICAL_PACKAGES:
        try:
            digest.update(f"\0{dist}\0{md.version(dist)}".encode())
        except md.PackageNotFoundError:
            digest.update(f"\0{dist}\0none".encode())
    return digest.hexdigest()[:16]


def invocation() -> str:
    """Which invocation computes steps now: $PAPA_INVOCATION, which the runner sets for its notebooks and jobs
    (``invoking``), else one of this process's own."""
    return os.environ.get("PAPA_INVOCATION") or _own_invocation()


@functools.lru_cache(maxsize=None)
def _own_invocation() -> str:
    return new_invocation()


def new_invocation() -> str:
    """A name for an invocation, unique: when it started, on which host, in which process."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{platform.node()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextmanager
def invoking(name: str | None = None):
    """Inside the block, steps record `name` (default: a new one) as the invocation that computed them, in this
    process and in every process it starts (notebook kernels, jobs). Yields the name."""
    before = os.environ.get("PAPA_INVOCATION")
    name = name or new_invocation()
    os.environ["PAPA_INVOCATION"] = name
    try:
        yield name
    finally:
        if before is None:
            os.environ.pop("PAPA_INVOCATION", None)
        else:
            os.environ["PAPA_INVOCATION"] = before


def fingerprint(inputs) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def slug(*parts) -> str:
    """A file name from parts (model ids with "/" included)."""
    return "__".join(str(p).replace("/", "--") for p in parts)


def rankings_index_path(run_dir: Path, model_name: str, task: str) -> Path:
    """Where notebook 6 writes, for (model, task), what the ranking tables read: every ranking it compared and
    the records of the sweep under them (``sweeps.compare_rankings``)."""
    return Path(run_dir) / "rankings" / f"{slug(model_name, task)}.json"


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# why a step found in the run folder is computed again, by its path (until ``provenance`` records it)
RECOMPUTED = {"damaged": "is damaged (unreadable)", "other code": "was computed by other numerical code"}
_RECOMPUTING: dict[str, str] = {}
_WARNED: set = set()
log = logging.getLogger("papa_utils")


class MissingStepError(RuntimeError):
    """A table needs a step's result that the run folder does not hold (made from the same inputs and code)."""

    def __init__(self, what: str, made_by: str):
        super().__init__(f"{what}: notebook {made_by} makes it; run it first (make figures NOTEBOOKS={made_by}, "
                         f"with the same PROFILE, MODELS, TASKS, RANKING and PASSES)")


def reusable(path: Path, stored: dict | None, key: str) -> bool:
    """Whether the step stored at `path` (`stored`: its record, None when it is missing or unreadable) is the step
    asked for: made from the same inputs (fingerprint `key`) by the same numerical code (``code_digest``). A step
    that is there but damaged, or was computed by other code, is computed again, and the run says so: a warning
    (once per reason and process), and the new record's "recomputed_because" (``provenance``)."""
    path = Path(path)
    if stored is None:
        reason = "damaged" if path.exists() else None
    elif stored.get("fingerprint") != key:
        reason = None  # other inputs: another step, which the folder keeps until it is overwritten
    elif stored.get("code") != code_digest():
        reason = "other code"
    else:
        return True
    if reason:
        _RECOMPUTING[str(path)] = reason
        if reason not in _WARNED:
            _WARNED.add(reason)
            log.warning(f"{path.parent.name}/{path.name} {RECOMPUTED[reason]}: it is computed again, and so is every "
                        f"other step found so (run.json counts them)")
    return False


def provenance(path: Path) -> dict:
    """What a step stores beside its result about how it was made: the code (``code_digest``), the invocation
    (``invocation``) and, when it replaced a step found in the folder, why."""
    reason = _RECOMPUTING.pop(str(path), None)
    return {"code": code_digest(), "invocation": invocation(), **({"recomputed_because": reason} if reason else {})}


def cached(path: Path, key: str) -> dict | None:
    """The result stored at `path` when it was made from inputs `key` by this code (``reusable``), else None."""
    found = read_json(path)
    return found if reusable(path, found if isinstance(found, dict) else None, key) else None


def store(path: Path, key: str, record: dict) -> dict:
    """Write a step's result with its fingerprint and ``provenance``; returns it as stored."""
    record = {**record, "fingerprint": key, **provenance(path)}
    write_json(path, record)
    return record


def cached_step(path: Path, key: str, compute: Callable[[], dict]) -> dict:
    """A step with one JSON result: the stored one when made from the same inputs, else `compute()`, stored."""
    found = cached(path, key)
    if found is not None:
        return found
    return store(path, key, compute())


# Run folders: one per profile and scope, claimed before anything is written into them.

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
        return slug(profile.name, *ranked)
    return slug(profile.name, "-".join(profile.models), "-".join(profile.tasks), *ranked)


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


def figures_dir(run_dir: Path) -> Path:
    """Where a run's figures go: <run>/figures. `make publish` copies them to figures/<profile>/."""
    path = Path(run_dir) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def notebook_run(profile: str, models: str = "", tasks: str = "", ranking: str = "", passes: str = "",
                 run_dir: str = "") -> tuple[Profile, Path]:
    """What every notebook starts with: its parameters (empty strings: the profile's own) as a profile, and the
    run folder it reads and writes (``open_run``)."""
    chosen = get_profile(profile, models or None, tasks or None, ranking or None, passes or None)
    return chosen, open_run(run_dir, chosen)
