import os
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


@pytest.fixture(scope="session")
def smoke(data_dir):
    """The smoke profile run once for the whole session (every notebook, through papermill), shared with nbval."""
    import pandas as pd

    from papa_utils.pipeline import get_profile, run_notebooks, runs_root

    profile = get_profile("smoke")
    before = checkout_state()
    run_dir = run_notebooks(profile)  # into $PAPA_RUNS_DIR/smoke (conftest: a temporary folder), where nbval's
    # notebooks (run later, as saved) find every step done
    assert run_dir == (runs_root() / "smoke").resolve()
    assert checkout_state() == before  # a run writes only into its run folder, never into the checkout
    return profile, run_dir, pd.read_csv(run_dir / "results" / "probe_results.csv")


