# Shared by the unit tests (tests/) and nbval (notebooks/): notebooks execute in notebooks/, so a relative
# PAPA_DATA_DIR given on the command line is made absolute before anything runs; and every run folder a test or a
# notebook makes goes under a temporary folder (removed at the end), never into the checkout.
import os
import shutil
import tempfile

from papa_utils.records.runs import absolute_data_dir

absolute_data_dir()
_RUNS = tempfile.mkdtemp(prefix="papa-test-runs-")
os.environ["PAPA_RUNS_DIR"] = _RUNS  # nbval's kernels inherit it: notebooks as saved run into it


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_RUNS, ignore_errors=True)
