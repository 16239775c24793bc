"""The one place where run artefacts are written: atomic files, cached steps, run metadata."""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
        digest.update((root / name.decode()).read_bytes())
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
