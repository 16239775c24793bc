"""Run artefacts: one atomic writer, the code state every run records, and publishing as an explicit step."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from papa_utils import AttentionAverages
from papa_utils.records.runs import ROOT, atomic_path, git_state


def test_an_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    import safetensors.torch

    def torn(tensors, filename, metadata=None):  # writes half a file, then the process "dies"
        open(filename, "wb").write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", torn)
    with pytest.raises(KeyboardInterrupt):
        AttentionAverages(torch.zeros(1, 1, 2, 2), torch.zeros(2, 2), {}).save(tmp_path / "avg.safetensors")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "model", folder=True) as tmp:
        (tmp / "config.json").write_text("{}")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_replaced_whole(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.png").write_text("old")
    with atomic_path(tmp_path / "out", folder=True) as tmp:
        (tmp / "new.png").write_text("new")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_code_state_says_whether_the_tree_differs_from_its_commit(tmp_path):
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("runs/\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_state(tmp_path)
    assert clean["dirty"] is False and clean["diff_sha256"] is None and len(clean["git_commit"]) == 40
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "result.json").write_text("{}")  # ignored files do not count
    assert git_state(tmp_path) == clean
    (tmp_path / "a.py").write_text("x = 2\n")
    edited = git_state(tmp_path)
    assert edited["dirty"] is True and re.fullmatch("[0-9a-f]{64}", edited["diff_sha256"])
    (tmp_path / "a.py").write_text("x = 3\n")
    assert git_state(tmp_path)["diff_sha256"] != edited["diff_sha256"]  # another change, another hash
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "new.py").write_text("y = 1\n")  # an untracked file counts too
    assert git_state(tmp_path)["dirty"] is True
    (tmp_path / "new.py").unlink()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "venv").symlink_to(tmp_path / "elsewhere")  # an untracked link to a folder: its target's name
    linked = git_state(tmp_path)
    assert linked["dirty"] is True and re.fullmatch("[0-9a-f]{64}", linked["diff_sha256"])
    (tmp_path / "venv").unlink()
    (tmp_path / "venv").symlink_to(tmp_path / "another")
    assert git_state(tmp_path)["diff_sha256"] != linked["diff_sha256"]  # another target, another state
    assert git_state(tmp_path / "nowhere")["git_commit"] == "unknown"


def test_json_artefacts_are_strict_json(tmp_path):
    """JSON has no NaN or Infinity: undefined numbers are written as null, numpy values as plain numbers."""
    import json
    import math

    import numpy as np

    from papa_utils.records.runs import write_json

    path = write_json(tmp_path / "a.json", {"nan": float("nan"), "inf": -math.inf, "np": np.float32(0.5),
                                            "nested": [np.nan, (1, np.int64(2))], "array": np.array([1.0, np.nan])})

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "nan": None, "inf": None, "np": 0.5, "nested": [None, [1, 2]], "array": [1.0, None]}


def test_a_published_notebook_has_relative_paths_in_its_text_only(tmp_path):
    """The run folder and the checkout that ran it become relative in text (papermill's metadata, sources,
    streams, text outputs); a path that only contains them, a relative path through them and image data stay."""
    from papa_utils.reports.publish import published_notebook
    from papa_utils.records.runs import ROOT, repo_relative

    checkout = tmp_path / "elsewhere" / "clone"
    run_dir = tmp_path / "runs" / "cpu"
    run_dir.mkdir(parents=True)
    longer, image = f"/mnt{checkout}/x.py", f"iVBOR{checkout}/AAAA"
    text = [f"saved in {run_dir}/figures\n", f"{checkout}/papa_utils/analysis.py:12: Warning\n", f"{longer}\n",
            f"../..{run_dir}\n"]
    notebook = {"cells": [{"cell_type": "code", "source": f'run_dir = "{run_dir}"', "outputs": [
        {"output_type": "stream", "name": "stdout", "text": text},
        {"output_type": "display_data", "data": {"image/png": image, "text/plain": f"{ROOT}/notebooks"}}]}],
        "metadata": {"papermill": {"input_path": f"{checkout}/notebooks/00.ipynb", "parameters": {"run_dir": str(run_dir)}}}}
    path = run_dir / "00.ipynb"
    path.write_text(json.dumps(notebook))
    out = json.loads(published_notebook(path, run_dir, "cpu"))
    cell, relative = out["cells"][0], repo_relative(run_dir)
    assert cell["source"] == f'run_dir = "{relative}"'
    assert cell["outputs"][0]["text"] == [f"saved in {relative}/figures\n", "papa_utils/analysis.py:12: Warning\n",
                                          f"{longer}\n", f"../..{run_dir}\n"]
    assert cell["outputs"][1]["data"] == {"image/png": image, "text/plain": "notebooks"}
    assert out["metadata"]["papermill"] == {"input_path": "notebooks/00.ipynb", "output_path": "results/cpu/notebooks/00.ipynb",
                                            "parameters": {"run_dir": relative}}


def test_a_step_is_reused_only_when_the_same_code_computed_it_from_the_same_inputs(tmp_path, monkeypatch, caplog):
    """A stored step is the step asked for only with the same fingerprint and the same numerical code: a step
    computed by other code, or whose file is damaged, is computed again, the run warns once per reason, and the new
    record says why it replaced the old one; a step made from other inputs is simply another step."""
    from papa_utils.records import runs

    monkeypatch.setattr(runs, "_WARNED", set())
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    path = tmp_path / "probe" / "step.json"
    first = runs.cached_step(path, "key", compute)
    assert first["value"] == 1 and first["code"] == runs.code_digest() and "recomputed_because" not in first
    assert first["invocation"] == runs.invocation()
    assert runs.cached_step(path, "key", compute)["value"] == 1 and len(calls) == 1  # same inputs, same code
    assert runs.cached_step(path, "other", compute)["value"] == 2  # other inputs: computed, without a reason
    assert "recomputed_because" not in runs.read_json(path)
    monkeypatch.setattr(runs, "code_digest", lambda: "another")
    with caplog.at_level("WARNING", logger="papa_utils"):
        again = runs.cached_step(path, "other", compute)
        runs.cached_step(tmp_path / "probe" / "second.json", "other", compute)  # no second warning for this reason
        runs.cached_step(tmp_path / "probe" / "second.json", "other", compute)  # nor for a reused step
    assert again["value"] == 3 and again["code"] == "another" and again["recomputed_because"] == "other code"
    assert [r.getMessage() for r in caplog.records] == [
        "probe/step.json was computed by other numerical code: it is computed again, and so is every other step "
        "found so (run.json counts them)"]
    path.write_text('{"value": 3, "fingerp')  # damaged
    assert runs.cached_step(path, "other", compute)["recomputed_because"] == "damaged"
    assert len(calls) == 5


def test_a_later_notebook_reads_the_claims_cells_from_claims_json_or_says_which_notebook_writes_it(tmp_path):
    from papa_utils.records import runs
    from papa_utils.reports.tables import claims_left_out

    with pytest.raises(runs.MissingStepError, match=re.escape(
            f"no claims.json in {runs.results_dir(tmp_path)}: notebook 04_model_strength makes it; run it first")):
        claims_left_out(tmp_path)
    runs.write_json(runs.results_dir(tmp_path) / "claims.json", {"left_out": {"a x": "baseline at its floor"}})
    assert claims_left_out(tmp_path) == {"a x": "baseline at its floor"}


def test_a_ranking_table_refuses_an_index_of_other_settings_or_code(tmp_path, monkeypatch):
    """The ranking tables read what notebook 6 wrote (``rankings_index``) and nothing else: an index that is
    missing, made under other settings of the profile, or by other numerical code is refused with the notebook that
    makes it; nothing is computed or written."""
    from dataclasses import asdict, replace

    from papa_utils.records import runs
    from papa_utils.reports import tables
    from papa_utils.settings.profiles import get_profile, recorded_settings

    profile = get_profile("smoke", tasks="sst2")
    path = runs.rankings_index_path(tmp_path, "minilm-l3", "sst2")
    redo = "notebook 06_gate_free_ranking makes it; run it first"
    with pytest.raises(runs.MissingStepError, match=re.escape(
            f"no ranking comparison for minilm-l3 x sst2 in {path.parent}: {redo}")):
        tables.rankings_index(tmp_path, profile, "minilm-l3", "sst2")
    index = {"settings": recorded_settings(asdict(profile)), "code": runs.code_digest(), "rankings": {}}
    runs.write_json(path, index)
    assert tables.rankings_index(tmp_path, profile, "minilm-l3", "sst2") == index
    with pytest.raises(runs.MissingStepError, match=re.escape(
            f"minilm-l3__sst2.json in {path.parent} was made with other settings of the profile: {redo}")):
        tables.rankings_index(tmp_path, replace(profile, rank_examples=16), "minilm-l3", "sst2")
    named = {**index, "model": "minilm-l3", "task": "sst2", "sweep": ["a.json"]}
    runs.write_json(tmp_path / "ranking_sweep" / "a.json", {"code": index["code"], "metrics": {}})
    assert tables._compared_sweep(tmp_path, named) == [{"code": index["code"], "metrics": {}}]
    runs.write_json(tmp_path / "ranking_sweep" / "a.json", {"code": "another", "metrics": {}})  # overwritten since
    with pytest.raises(runs.MissingStepError, match=re.escape(
            "a record of the ranking sweep of minilm-l3 x sst2 is missing, damaged or was computed by other code "
            f"than its index: {redo}")):
        tables._compared_sweep(tmp_path, named)
    (tmp_path / "ranking_sweep" / "a.json").unlink()
    monkeypatch.setattr(tables, "code_digest", lambda: "another")
    with pytest.raises(runs.MissingStepError, match=re.escape(
            f"minilm-l3__sst2.json in {path.parent} was computed by other numerical code: {redo}")):
        tables.rankings_index(tmp_path, profile, "minilm-l3", "sst2")
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [
        "rankings/minilm-l3__sst2.json"]


def test_the_code_digest_follows_the_numerical_modules_only(tmp_path, monkeypatch):
    """Editing the code of a module that computes steps' numbers (or a package version) changes the digest steps
    record; editing its comments or docstrings, or a module that only reads, draws or publishes them, does not."""
    import shutil

    from papa_utils.records import runs

    package = tmp_path / "papa_utils"
    shutil.copytree(ROOT / "papa_utils", package, ignore=shutil.ignore_patterns("__pycache__"))
    digest = lambda: runs.code_digest.__wrapped__(package)  # noqa: E731  (uncached)
    before = digest()
    assert before == runs.code_digest()  # the same sources as the checkout's
    source = lambda name: package.joinpath(*name.split(".")).with_suffix(".py")  # noqa: E731
    for name in ("reports.figures", "reports.verdicts", "reports.publish", "reports.tables", "runner.pipeline"):
        source(name).write_text(source(name).read_text() + "\nEPSILON = 1e-12\n")
        assert digest() == before, name
    for name in runs.NUMERICAL_CODE:
        original = source(name).read_text()
        source(name).write_text(original + "\n# a comment\n")  # a comment computes nothing
        assert digest() == before, name
        source(name).write_text(original.replace('"""', '"""A docstring changed. ', 1))
        assert digest() == before, name
        source(name).write_text(original + "\nEPSILON = 1e-12\n")  # code
        assert digest() != before, name
        source(name).write_text(original)
    monkeypatch.setattr("importlib.metadata.version", lambda dist: "0.0")
    assert digest() != before


def test_a_run_json_from_before_invocations_were_listed_reads_as_one_invocation(tmp_path):
    """run.json written before it listed invocations: its one finished invocation rebuilt from the top-level record;
    a new invocation then joins it, and one recorded again under its name replaces its earlier record."""
    from papa_utils.records.runs import invocations_of, record_invocation, run_totals, write_json

    old = {"scope": {}, "git_commit": "a" * 40, "dirty": False, "time": "2026-12-05T22:24:30+0000",
           "wall_seconds": 600.0, "peak_memory_gb": 1.5, "notebooks": ["04_model_strength"],
           "notebook_seconds": {"04_model_strength": 600.0}}
    [one] = invocations_of(old)
    assert one["git_commit"] == "a" * 40 and one["wall_seconds"] == 600.0 and one["finished"] and one["steps"] is None
    assert one["started"] == "2026-12-05T22:14:30+0000"
    write_json(tmp_path / "run.json", old)
    entry = {"invocation": "new", "wall_seconds": 5.0, "peak_memory_gb": 2.0, "finished": False}
    record_invocation(tmp_path, entry, starting=True)
    run = json.loads((tmp_path / "run.json").read_text())
    assert "wall_seconds" not in run  # unfinished until an invocation finishes
    assert [i["invocation"] for i in run["invocations"]] == [None, "new"]
    record_invocation(tmp_path, {**entry, "wall_seconds": 50.0, "finished": True})
    invocations = json.loads((tmp_path / "run.json").read_text())["invocations"]
    assert [i["wall_seconds"] for i in invocations] == [600.0, 50.0]
    assert run_totals(invocations) == {"wall_seconds": 650.0, "peak_memory_gb": 2.0, "walls_recorded": True}
    assert run_totals(invocations[:1] + [entry])["walls_recorded"] is False  # an interrupted one: a lower bound


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the sampler reads Linux's /proc")
def test_the_memory_sampler_tells_anonymous_memory_from_file_pages_of_a_child_process(tmp_path):
    """A child that fills 300 MiB of its own memory and reads a 200 MiB file through mmap: the sampler of its
    parent sees the first as anonymous memory and the second as file pages, each at least its size."""
    import gc
    import os
    import subprocess
    import sys

    from papa_utils.records.memory import MemorySampler, _process_kb

    data = tmp_path / "pages.bin"
    data.write_bytes(b"\x01" * (200 << 20))
    child = ("import mmap, sys\n"
             "held = b'\\x02' * (300 << 20)\n"
             f"f = open({str(data)!r}, 'rb')\n"
             "m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n"
             "touched = sum(m[i] for i in range(0, len(m), 4096))\n"
             "print('ready', flush=True)\n"
             "sys.stdin.read()\n")
    with MemorySampler(interval=60) as memory:  # sampled on entering and by hand
        process = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True)
        assert process.stdout.readline().strip() == "ready"
        gc.collect()
        before = _process_kb(os.getpid())  # this process alone, just before the sample: others come and go
        memory.sample()
        process.communicate("")
    peak = memory.peak()
    gib = 1024 ** 2
    assert peak["anonymous_gb"] >= before["anonymous"] / gib + 300 / 1024 - 0.01
    assert peak["file_backed_gb"] >= before["file"] / gib + 200 / 1024 - 0.01
    assert peak["resident_gb"] >= peak["anonymous_gb"]


def test_a_runs_memory_is_the_largest_over_the_invocations_that_sampled_it():
    from papa_utils.records.runs import run_totals

    invocations = [{"wall_seconds": 10.0, "peak_memory_gb": 3.0,
                    "memory": {"anonymous_gb": 2.0, "resident_gb": 5.0, "file_backed_gb": 2.5}},
                   {"wall_seconds": 5.0, "peak_memory_gb": 4.0},
                   {"wall_seconds": 5.0, "peak_memory_gb": 2.0,
                    "memory": {"anonymous_gb": 2.5, "resident_gb": 4.0, "file_backed_gb": 1.0}}]
    totals = run_totals(invocations)
    assert totals["memory"] == {"anonymous_gb": 2.5, "resident_gb": 5.0, "file_backed_gb": 2.5, "invocations": 2}
    assert totals["peak_memory_gb"] == 4.0 and "memory" not in run_totals(invocations[1:2])


def test_the_feature_cache_of_a_run_is_the_largest_over_its_invocations():
    """An invocation that finds every step done never fills the cache: the run keeps the largest of any invocation,
    an interrupted one included, and of what an earlier run.json recorded before invocations kept their own."""
    from papa_utils.runner.pipeline import cache_record

    interrupted, again = {"finished": False, "feature_cache_gb": 7.4}, {"finished": True, "feature_cache_gb": 0.0}
    assert cache_record({}, [interrupted, again], 0.0) == {"largest": 7.4, "at_the_end": 0.0}
    assert cache_record({}, [{"finished": True}, again], 0.5) == {"largest": 0.0, "at_the_end": 0.5}  # none kept
    earlier = {"feature_cache_gb": {"largest": 7.4, "at_the_end": 0.0}}
    assert cache_record(earlier, [{"finished": True}, again], 0.0) == {"largest": 7.4, "at_the_end": 0.0}
    assert cache_record(earlier, [again, {"feature_cache_gb": 9.1}], 1.5) == {"largest": 9.1, "at_the_end": 1.5}
