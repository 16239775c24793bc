import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never wait for the Hub
torch.manual_seed(0)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The local data folder; the tests that read real data need it (CI sets it to ../shared/data)."""
    value = os.environ.get("PAPA_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.fail("set PAPA_DATA_DIR to the local data folder (e.g. ../shared/data) to run the data tests")
    return Path(value)


@pytest.fixture(scope="session")
def minilm_l6():
    from papa_utils import load_model

    return load_model("minilm-l6")


@pytest.fixture(scope="session")
def minilm_l3():
    from papa_utils import load_model

    return load_model("minilm-l3")


def checkout_state():
    """Every file under the checkout (outside .git, .venv and caches), with its modification time."""
    state = {}
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if d not in {".git", ".venv", "__pycache__", ".pytest_cache"}]
        state.update({f"{folder}/{f}": os.stat(f"{folder}/{f}").st_mtime_ns for f in files})
    return state


SMOKE_RUN = {}  # the session's smoke run: its process, log and the checkout's state when it started


def smoke_command() -> list[str]:
    """`make figures PROFILE=smoke` for notebooks 1 to 6, which compute every step and write the results, into
    $PAPA_RUNS_DIR/smoke. The teaching notebook 0 computes nothing later notebooks use: it runs in the slow tier
    (``teaching_run``, and nbval, whose notebooks, run later as saved, find every step done there)."""
    from papa_utils.pipeline import NOTEBOOKS

    return [sys.executable, "-m", "papa_utils.pipeline", "--profile", "smoke", "--notebooks", ",".join(NOTEBOOKS[1:])]


def start_smoke_run() -> None:
    """Start the smoke run in the background (its notebooks run in kernels of their own), once."""
    if SMOKE_RUN or not Path(os.environ.get("PAPA_DATA_DIR") or "/nonexistent").is_dir():
        return
    from papa_utils.pipeline import runs_root

    log = runs_root() / "smoke.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    SMOKE_RUN["state"] = checkout_state()
    SMOKE_RUN["log"] = log
    with open(log, "w") as out:
        SMOKE_RUN["process"] = subprocess.Popen(smoke_command(), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                                env={**os.environ, "PAPA_PROGRESS": "0", "OMP_NUM_THREADS": "1"})
    SMOKE_RUN["threads"] = torch.get_num_threads()
    torch.set_num_threads(1)  # two cores: one for the run, one for the tests meanwhile (more threads than cores
    # would slow both many times over); every thread again once the run is done (``smoke``)


def pytest_collection_modifyitems(items):
    """When some tests read the smoke run, it starts now, in the background, and those tests go last (before the
    notebooks nbval runs, which find its steps done): every other test runs while it computes."""
    def needs_smoke(item):
        return "smoke" in getattr(item, "fixturenames", ())

    reading = [i for i in items if needs_smoke(i)]
    if not reading:
        return
    notebooks = [i for i in items if i.path.suffix == ".ipynb"]
    items[:] = [i for i in items if not needs_smoke(i) and i not in notebooks] + reading + notebooks
    start_smoke_run()


def pytest_sessionfinish(session, exitstatus):
    process = SMOKE_RUN.get("process")
    if process is not None and process.poll() is None:  # the session ended before the run (e.g. Ctrl-C)
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def smoke(data_dir):
    """The smoke run of the session (``start_smoke_run``), waited for: its profile, run folder and results."""
    import pandas as pd

    from papa_utils.pipeline import get_profile, runs_root

    start_smoke_run()
    code = SMOKE_RUN["process"].wait()
    torch.set_num_threads(SMOKE_RUN["threads"])
    if code != 0:
        pytest.fail(f"the smoke run ({' '.join(smoke_command()[1:])}) failed with exit code {code}; its log "
                    f"ends:\n" + "\n".join(SMOKE_RUN["log"].read_text().splitlines()[-40:]))
    run_dir = (runs_root() / "smoke").resolve()
    assert checkout_state() == SMOKE_RUN["state"]  # the run (and every test meanwhile) wrote only outside the checkout
    return get_profile("smoke"), run_dir, pd.read_csv(run_dir / "results" / "probe_results.csv")


@pytest.fixture(scope="session")
def teaching_run(data_dir, tmp_path_factory):
    """The teaching notebook (00) of the smoke profile through papermill, in a run folder of its own."""
    from papa_utils.pipeline import get_profile, run_notebooks

    return run_notebooks(get_profile("smoke"), tmp_path_factory.mktemp("teaching"), notebooks=["00_anatomy_of_attention"])


