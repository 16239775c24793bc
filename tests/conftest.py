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
