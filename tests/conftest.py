import os
import signal
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
        message = "no data folder: set PAPA_DATA_DIR to the local data folder (e.g. ../shared/data) to run the tests " \
                  "that read data"
        if os.environ.get("CI"):  # CI must test everything: there, a missing data folder is a failure
            pytest.fail(message)
        pytest.skip(message)
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


SMOKE_RUN = {}  # the session's smoke run: its process, run folder, log and the checkout's state when it started
SMOKE_THREADS = 1  # threads of the smoke run's kernels (their OMP_NUM_THREADS)
SMOKE_TIMEOUT = 1200  # seconds the tests wait for the smoke run: many times what it takes, short of a hung run


def threads_beside_the_smoke_run() -> int:
    """Threads of the test process while the smoke run computes beside it: the machine's cores it leaves free (more
    threads than cores would slow both many times over)."""
    return max(1, (os.cpu_count() or 1) - SMOKE_THREADS)


@pytest.fixture
def smoke_threads():
    """For a test that compares its own computation with the smoke run's to the last digit: the run's thread count
    (sums over another number of threads round differently), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(SMOKE_THREADS)
    yield
    torch.set_num_threads(before)


def smoke_command(run_dir: Path) -> list[str]:
    """The smoke profile's notebooks 1 to 6 through the pipeline's CLI (what `make figures PROFILE=smoke` runs,
    without the teaching notebook), into `run_dir`. Notebooks 1 to 6 compute every step and write the results;
    the teaching notebook 0 computes nothing they use and runs in the slow tier (``teaching_run``, and nbval)."""
    from papa_utils.runner.pipeline import NOTEBOOKS

    return [sys.executable, "-m", "papa_utils.runner.pipeline", "--profile", "smoke", "--run-dir", str(run_dir),
            "--notebooks", ",".join(NOTEBOOKS[1:])]


def start_smoke_run() -> None:
    """Start the smoke run in the background (its notebooks run in kernels of their own), once, into
    $PAPA_RUNS_DIR/smoke, where nbval's notebooks (run later, as saved) find its steps done. The run computes on
    ``SMOKE_THREADS`` threads and this process, from then on, on the cores left (``threads_beside_the_smoke_run``).
    The tests that compare their numbers with the run's exactly take its thread count (``smoke_threads``)."""
    if SMOKE_RUN or not Path(os.environ.get("PAPA_DATA_DIR") or "/nonexistent").is_dir():
        return
    from papa_utils.records.runs import runs_root

    run_dir = (runs_root() / "smoke").resolve()
    log = runs_root() / "smoke.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    state = checkout_state()
    with open(log, "w") as out:
        process = subprocess.Popen(smoke_command(run_dir), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PAPA_PROGRESS": "0", "OMP_NUM_THREADS": str(SMOKE_THREADS)},
                                   start_new_session=True)  # its own process group: stopped with its kernels
    torch.set_num_threads(threads_beside_the_smoke_run())
    SMOKE_RUN.update(process=process, run_dir=run_dir, log=log, state=state)


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected what will not run
def pytest_collection_modifyitems(config, items):
    """When some of the tests that will run read the smoke run, it starts now, in the background, and those tests
    go last (before the notebooks nbval runs, which find its steps done): every other test runs meanwhile."""
    def needs_smoke(item):
        return "smoke" in getattr(item, "fixturenames", ())

    reading = [i for i in items if needs_smoke(i)]
    if not reading or config.option.collectonly:
        return
    notebooks = [i for i in items if i.path.suffix == ".ipynb"]
    items[:] = [i for i in items if not needs_smoke(i) and i not in notebooks] + reading + notebooks
    start_smoke_run()


@pytest.hookimpl(tryfirst=True)  # before the run folders are removed
def pytest_sessionfinish(session, exitstatus):
    process = SMOKE_RUN.get("process")
    if process is not None and process.poll() is None:  # the session ended before the run (e.g. Ctrl-C)
        process.send_signal(signal.SIGINT)  # papermill shuts its kernel down on an interrupt
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def smoke(data_dir):
    """The smoke run of the session (``start_smoke_run``), waited for: its profile, run folder and results."""
    import pandas as pd

    from papa_utils.settings.profiles import get_profile

    start_smoke_run()
    if "process" not in SMOKE_RUN:
        pytest.fail("the smoke run did not start (see the error above)")
    try:
        code = SMOKE_RUN["process"].wait(timeout=SMOKE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(SMOKE_RUN["process"].pid, signal.SIGKILL)  # the run and the notebook kernels it started
        SMOKE_RUN["process"].wait()
        pytest.fail(f"the smoke run ({' '.join(smoke_command(SMOKE_RUN['run_dir'])[1:])}) did not finish within "
                    f"{SMOKE_TIMEOUT} s and was stopped; its log ends:\n"
                    + "\n".join(SMOKE_RUN["log"].read_text().splitlines()[-80:]))
    if code != 0:
        pytest.fail(f"the smoke run ({' '.join(smoke_command(SMOKE_RUN['run_dir'])[1:])}) failed with exit code "
                    f"{code}; its log ends:\n" + "\n".join(SMOKE_RUN["log"].read_text().splitlines()[-80:]))
    changed = sorted(set(checkout_state().items()) ^ set(SMOKE_RUN["state"].items()))
    assert changed == [], f"the smoke run, or a test that ran meanwhile, wrote into the checkout: {changed[:5]}"
    run_dir = SMOKE_RUN["run_dir"]
    return get_profile("smoke"), run_dir, pd.read_csv(run_dir / "results" / "probe_results.csv")


@pytest.fixture(scope="session")
def teaching_run(data_dir, tmp_path_factory):
    """The teaching notebook (00) of the smoke profile through papermill, in a run folder of its own."""
    from papa_utils.runner.pipeline import run_notebooks
    from papa_utils.settings.profiles import get_profile

    before = checkout_state()
    run_dir = run_notebooks(get_profile("smoke"), tmp_path_factory.mktemp("teaching"),
                            notebooks=["00_anatomy_of_attention"])
    assert checkout_state() == before  # the notebook writes only into its run folder, never into the checkout
    return run_dir


