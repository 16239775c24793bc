"""The one place where run artefacts are written: atomic files, cached steps, run metadata."""
from __future__ import annotations

import json
import os
import platform
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


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to `path`; rename it to `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, data) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    return Path(path)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"


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
            "packages": versions, "git_commit": git_commit(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
