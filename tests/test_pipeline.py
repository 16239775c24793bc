"""The smoke profile end to end (what `make figures PROFILE=smoke` runs), then its results read back."""
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from papa_utils.core.backbones import cached_model
from papa_utils.settings.choices import replaced_counts
from papa_utils.core.metrics import metric_range
from papa_utils.runner.pipeline import NOTEBOOKS, main
from papa_utils.core.probe import ProbeConfig, train_probe
from papa_utils.settings.profiles import get_profile
from papa_utils.records.runs import ROOT, RunScopeError, claim_run_folder, code_digest, open_run, run_name, runs_root
from papa_utils.runner.steps import average_attention, averages_key, encoded, head_ranking, replaced_heads, task_data
from papa_utils.runner.sweeps import probe_sweep
from papa_utils.reports.tables import step_provenance, write_results
from papa_utils.settings.tasks import get_task


def probe_record(run_dir, task, k, seed, model="minilm-l3"):
    return json.loads((run_dir / "probe" / f"{model}__{task}__k{k}__seed{seed}.json").read_text())


def test_every_expected_row_is_present(smoke):
    profile, _, results = smoke
    counts = replaced_counts(36)  # minilm-l3: 3 layers x 12 heads
    assert counts == [0, 18, 32, 34, 36]
    metrics = {"sst2": ["accuracy"], "mrpc": ["f1", "accuracy"], "ner": ["entity_f1"]}
    expected = {(m, t, k, s, metric, "probe") for m in profile.models for t in profile.tasks for k in counts
                for s in profile.seeds for metric in metrics[t]}
    expected |= {(m, t, 0, s, metric, reference) for m in profile.models for t in profile.tasks
                 for s in profile.seeds for metric in metrics[t] for reference in ("trivial", "attention_free")}
    got = results[["model", "task", "replaced_heads", "seed", "metric", "predictor"]].itertuples(index=False, name=None)
    got = list(got)
    assert set(got) == expected and len(got) == len(expected)
    assert (results.train_examples == 64).all() and (results.dev_examples == 64).all() and (results.L == 32).all()
    assert (results.dynamic_heads == 36 - results.replaced_heads).all()


def test_metrics_lie_in_their_valid_ranges(smoke):
    _, _, results = smoke
    for row in results.itertuples():
        low, high = metric_range(row.metric)
        assert low <= row.value <= high, row


def test_rerun_with_same_seed_gives_identical_numbers_and_k0_is_the_baseline(smoke, smoke_threads, tmp_path):
    """A fresh run (new run folder, nothing cached) of the baseline and of a partial configuration
    reproduces the recorded numbers exactly."""
    profile, run_dir, results = smoke
    ranking = json.loads((run_dir / "ranking" / "minilm-l3__mrpc.json").read_text())["ranking"]
    average_attention(tmp_path, profile, "minilm-l3", "mrpc")  # one pass: averages and the baseline's features
    saved = tmp_path / "features" / "minilm-l3__mrpc__k0__train__L32.pt"
    assert saved.exists()
    fresh = probe_sweep(tmp_path, profile, "minilm-l3", "mrpc", [0, 18], ranking)
    assert not saved.exists()  # used by the k = 0 probes, then removed
    for r in fresh:
        for metric, value in r["metrics"].items():
            recorded = results[(results.task == "mrpc") & (results.replaced_heads == r["replaced_heads"])
                               & (results.predictor == "probe")
                               & (results.seed == r["seed"]) & (results.metric == metric)]["value"]
            assert len(recorded) == 1 and recorded.iloc[0] == pytest.approx(value, abs=1e-9), (r, metric)


def test_full_papa_changes_what_the_probe_sees(smoke):
    """Guard against a silently inactive replacement: with the same seed and data, the baseline (k = 0) and
    full PAPA (k = all) probes of every task differ from the first epoch's training loss on."""
    profile, run_dir, _ = smoke
    for task in profile.tasks:
        for seed in profile.seeds:
            baseline, papa = probe_record(run_dir, task, 0, seed), probe_record(run_dir, task, 36, seed)
            assert baseline["curve"][0]["train_loss"] != papa["curve"][0]["train_loss"], (task, seed)
            assert baseline["heads"] == [] and papa["heads"] == "all"


def test_partial_configurations_replace_the_first_k_heads_of_the_ranking(smoke, smoke_threads):
    """Each partial configuration records the first k heads of the gate ranking, and a probe trained here
    directly on those heads (not through the sweep) reproduces the sweep's numbers."""
    profile, run_dir, _ = smoke
    ranking = [tuple(h) for h in json.loads((run_dir / "ranking" / "minilm-l3__mrpc.json").read_text())["ranking"]]
    for k in (18, 32, 34):
        assert [tuple(h) for h in probe_record(run_dir, "mrpc", k, 42)["heads"]] == ranking[:k]
    model, _ = cached_model("minilm-l3")
    length = profile.length("mrpc")
    train = encoded("minilm-l3", task_data("mrpc", "train", 64), length)
    dev = encoded("minilm-l3", task_data("mrpc", "validation", 64), length)
    direct = train_probe(model, get_task("mrpc"), train, dev, seed=42, averages=average_attention(
        run_dir, profile, "minilm-l3", "mrpc"), heads=ranking[:18], config=ProbeConfig(epochs=2, precision="fp32"))
    assert direct.metrics == pytest.approx(probe_record(run_dir, "mrpc", 18, 42)["metrics"], abs=1e-9)


def test_replaced_heads_of_a_configuration():
    ranking = [(1, 0), (0, 2), (1, 1), (0, 0), (0, 1), (1, 2)]
    assert replaced_heads(0, 6, ranking) == [] and replaced_heads(6, 6, ranking) == "all"
    assert replaced_heads(2, 6, ranking) == [(1, 0), (0, 2)]  # the FIRST k: those leaning most on constants
    with pytest.raises(ValueError, match="replacing 3 of 6 heads needs a head ranking"):
        replaced_heads(3, 6)
    with pytest.raises(ValueError, match="the head ranking lists 5 heads, the model has 6"):
        replaced_heads(3, 6, ranking[:5])


def test_identical_averages_keep_every_result_built_on_them(smoke, smoke_threads, tmp_path):
    """Cache keys hold inputs, never timings: averages computed again from the same inputs (another wall time)
    leave the ranking and every probe result in place (in a copy of the smoke run's folder, whose own steps other
    tests count)."""
    profile, smoke_dir, _ = smoke
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_dir, run_dir)
    path = run_dir / "averages" / "minilm-l3__sst2__L32.safetensors"
    key = average_attention(run_dir, profile, "minilm-l3", "sst2").meta["key"]
    path.unlink()
    again = average_attention(run_dir, profile, "minilm-l3", "sst2")
    assert path.exists() and again.meta["key"] == key
    files = sorted((run_dir / "probe").glob("minilm-l3__sst2__*.json")) + [run_dir / "ranking" / "minilm-l3__sst2.json"]
    before = {p: p.stat().st_mtime_ns for p in files}
    head_ranking(run_dir, profile, "minilm-l3", "sst2")
    probe_sweep(run_dir, profile, "minilm-l3", "sst2", replaced_counts(36),
                json.loads(files[-1].read_text())["ranking"])
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_averages_of_other_code_or_damaged_are_computed_again_and_say_so(data_dir, tmp_path, monkeypatch):
    """The constant matrices are a step like the others: a damaged file, or matrices computed by other numerical
    code, are computed again (to the same values), and the new file's metadata says why."""
    from dataclasses import replace

    from papa_utils.records import runs

    profile = replace(get_profile("smoke", tasks="sst2"), average_examples=16, train_examples=8)
    first = average_attention(tmp_path, profile, "minilm-l3", "sst2")
    path = tmp_path / "averages" / "minilm-l3__sst2__L32.safetensors"
    assert first.meta["code"] == code_digest() and "recomputed_because" not in first.meta
    path.write_bytes(path.read_bytes()[:100])  # cut short
    damaged = average_attention(tmp_path, profile, "minilm-l3", "sst2")
    assert damaged.meta["recomputed_because"] == "damaged" and torch.equal(damaged.averages, first.averages)
    monkeypatch.setattr(runs, "code_digest", lambda: "another")
    other = average_attention(tmp_path, profile, "minilm-l3", "sst2")
    assert other.meta["recomputed_because"] == "other code" and other.meta["code"] == "another"
    assert torch.equal(other.averages, first.averages)
    written = path.stat().st_mtime_ns
    assert average_attention(tmp_path, profile, "minilm-l3", "sst2").meta == other.meta  # now reused as it is
    assert path.stat().st_mtime_ns == written


def test_averages_over_other_examples_do_not_pass_for_the_probes_features(data_dir, tmp_path):
    """The averages pass keeps its hidden states as the baseline's features only when it ran over the probe's
    very examples: a subset of another size is another set of rows, not the same file."""
    from dataclasses import replace

    profile = replace(get_profile("smoke", tasks="sst2"), average_examples=48, train_examples=32)
    assert task_data("sst2", "train", 48).checksum != task_data("sst2", "train", 32).checksum
    average_attention(tmp_path, profile, "minilm-l3", "sst2")
    assert not (tmp_path / "features").exists() or list((tmp_path / "features").iterdir()) == []
    same = replace(profile, average_examples=32)  # the probe's very examples: their features are kept
    average_attention(tmp_path / "same", same, "minilm-l3", "sst2")
    assert [p.name for p in (tmp_path / "same" / "features").iterdir()] == ["minilm-l3__sst2__k0__train__L32.pt"]


def test_no_feature_files_are_left_behind(smoke):
    _, run_dir, _ = smoke
    assert (run_dir / "features").is_dir()  # the averages pass did save baseline features
    assert list((run_dir / "features").glob("*")) == []
    run = json.loads((run_dir / "run.json").read_text())
    assert run["feature_cache_gb"]["at_the_end"] == 0 and run["feature_cache_gb"]["largest"] > 0  # notebook 1 saved some


def test_rerun_skips_finished_steps(smoke):
    profile, run_dir, _ = smoke
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "probe").glob("*.json")}
    probe_sweep(run_dir, profile, "minilm-l3", "sst2", [0, 36])
    after = {p: p.stat().st_mtime_ns for p in (run_dir / "probe").glob("*.json")}
    assert before == after


def test_figures_tables_and_metadata_exist(smoke):
    profile, run_dir, _ = smoke
    figures = run_dir / "figures"
    for name in ["performance_vs_dynamic_heads", "relative_drop_vs_baseline", "average_attention_minilm-l3_mrpc",
                 "dev_curves"]:
        for suffix in (".pdf", ".png"):
            assert (figures / f"{name}{suffix}").stat().st_size > 5000, name
    table = (run_dir / "results" / "table1.md").read_text()
    # the three tasks, and MRPC's accuracy beside its F1
    assert table.count("| minilm-l3 |") == 4 and "| minilm-l3 | mrpc | accuracy |" in table
    assert "**average over the cells in the claims**" in table
    assert "\\begin{tabular}" in (run_dir / "results" / "table1.tex").read_text()
    claims = json.loads((run_dir / "results" / "claims.json").read_text())
    assert claims["pooled_strength_correlation"]["points"] == len(claims["cells_in_claims"])
    assert claims["stronger_models_lose_more"] is None  # one model: nothing to compare within a task
    assert claims["strength_model_level"]["verdict"]["verdict"] == "undecided"
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["git_commit"] and meta["packages"]["torch"].startswith("2.13.0")
    assert isinstance(meta["dirty"], bool) and (meta["diff_sha256"] is None) == (not meta["dirty"])
    assert meta["scope"] == {"profile": "smoke", "models": ["minilm-l3"], "tasks": ["sst2", "mrpc", "ner"],
                             "seeds": [42, 43], "ranking": "gates", "passes": "packed"}
    assert not meta["run_dir"].startswith("/") and (ROOT / meta["run_dir"]).resolve() == run_dir.resolve()
    assert list(meta["notebook_seconds"]) == meta["notebooks"] == NOTEBOOKS[1:]  # as the smoke fixture asked
    [invocation] = meta["invocations"]  # one invocation, which computed every step in the folder
    steps = step_provenance(run_dir)
    assert invocation["finished"] and len(steps) > 100
    assert invocation["steps"] == {"computed": len(steps), "reused": 0, "recomputed": {}}
    assert {s["invocation"] for s in steps} == {invocation["invocation"]} and {s["code"] for s in steps} == {code_digest()}
    assert meta["wall_seconds"] == invocation["wall_seconds"] >= sum(invocation["notebook_seconds"].values())
    assert meta["peak_memory_gb"] == invocation["peak_memory_gb"] > 0
    assert meta["feature_cache_gb"]["largest"] == invocation["feature_cache_gb"] > 0  # the invocation keeps its own
    # the run's process tree, sampled where /proc says: anonymous memory and the file pages in the total
    if Path("/proc/self/status").exists():
        memory = invocation["memory"]
        assert meta["memory"] == {**memory, "invocations": 1}
        assert 0 < memory["anonymous_gb"] <= memory["resident_gb"]
        assert 0 < memory["file_backed_gb"] < memory["resident_gb"]
    assert NOTEBOOKS[0] == "00_anatomy_of_attention"
    for name in meta["notebook_seconds"]:
        executed = json.loads((run_dir / f"{name}.ipynb").read_text())
        assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])


def notebook_text(path: Path) -> str:
    """Everything an executed notebook printed."""
    cells = json.loads(path.read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c["outputs"])


def test_the_notebooks_of_one_run_agree_on_the_cells_in_the_claims(smoke):
    """Notebooks 2 and 4 list the same cells left out, for the same reasons (the same per-example statistics),
    and claims.json says the same."""
    _, run_dir, _ = smoke
    def left_out(name, prefix):
        return sorted(line.split(prefix, 1)[1] for line in notebook_text(run_dir / f"{name}.ipynb").splitlines()
                      if line.startswith(prefix))

    claims = json.loads((run_dir / "results" / "claims.json").read_text())
    in_02 = left_out("02_probe_baselines", "left out of the claims: ")
    assert in_02 and in_02 == left_out("04_model_strength", "left out of claims 1-3: ")
    assert in_02 == sorted(f"{cell}: {why}" for cell, why in claims["left_out"].items())


PROGRESS_BAR = re.compile(r"\d+%\|.*\||it/s\]|Loading weights")


def test_executed_notebooks_carry_no_progress_bar_and_no_repeated_note(smoke):
    """What a reader sees in an executed notebook: no progress bar frozen at its first frame, no widget that cannot
    be drawn, and each note on stderr once."""
    _, run_dir, _ = smoke
    for path in sorted(run_dir.glob("*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        outputs = [o for c in cells for o in c["outputs"]]
        assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), path.name
        text = [line for o in outputs for line in "".join(o.get("text", "")).splitlines()]
        assert [line for line in text if PROGRESS_BAR.search(line)] == [], path.name
        noted = [line for o in outputs if o.get("name") == "stderr" for line in "".join(o["text"]).splitlines()
                 if line.strip()]
        assert len(noted) == len(set(noted)), path.name


def test_a_data_note_is_logged_once_per_process(data_dir, caplog):
    from papa_utils.settings import tasks

    tasks._NOTED.clear()
    with caplog.at_level("WARNING"):
        for _ in range(3):
            tasks.load_task("mnli", "train")
    assert [r.getMessage()[:34] for r in caplog.records] == ["MNLI train is the local subset glu"]


def test_a_narrowed_run_gets_its_own_folder():
    assert run_name(get_profile("cpu")) == "cpu"
    assert run_name(get_profile("cpu", models="minilm-l3", tasks="sst2,ner")) == "cpu__minilm-l3__sst2-ner"
    assert open_run("", get_profile("smoke", tasks="sst2")) == runs_root() / "smoke__minilm-l3__sst2"
    assert run_name(get_profile("cpu", ranking="gates")) == "cpu__ranked-by-gates"  # its profile ranks by input dependence
    assert run_name(get_profile("cpu", ranking="input_dependence")) == "cpu"
    assert run_name(get_profile("cpu", tasks="sst2", ranking="random")) == "cpu__minilm-l3-minilm-l6-mpnet-base__sst2__ranked-by-random"
    assert str(runs_root()).startswith(tempfile.gettempdir())  # the tests' runs never go to the checkout


def test_a_run_with_padded_passes_never_shares_a_folder_with_the_packed_run(smoke):
    """Every step's cache key holds the passes, and the run folder's scope too: a padded run is another run."""
    _, run_dir, _ = smoke
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match=re.escape("heads ranked by gates; packed passes. This run covers profile "
                                                   "smoke: models minilm-l3; tasks sst2, mrpc, ner; seeds 42, 43; "
                                                   "heads ranked by gates; padded passes")):
        main(["--profile", "smoke", "--passes", "padded", "--run-dir", str(run_dir)])
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == files
    assert run_name(get_profile("smoke", passes="padded")) == "smoke__padded-passes"
    packed, padded = get_profile("smoke"), get_profile("smoke", passes="padded")
    data = task_data("sst2", "train", 8)
    assert averages_key(packed, "minilm-l3", "sst2", data) != averages_key(padded, "minilm-l3", "sst2", data)
    with pytest.raises(SystemExit, match="^passes must be one of 'packed', 'padded', got 'pad'$"):
        main(["--profile", "smoke", "--passes", "pad"])


def test_a_narrowed_run_never_overwrites_a_wider_runs_results(smoke):
    profile, run_dir, _ = smoke
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    message = (f"run folder {run_dir} holds a run over profile smoke: models minilm-l3; tasks sst2, mrpc, ner; seeds "
               f"42, 43; heads ranked by gates; packed passes. This run covers profile smoke: models minilm-l3; tasks "
               f"sst2; seeds 42, 43; heads ranked by gates; packed passes, so it would overwrite those results with "
               f"fewer. Leave RUN_DIR unset")
    with pytest.raises(SystemExit, match=re.escape(message)):
        main(["--profile", "smoke", "--tasks", "sst2", "--run-dir", str(run_dir)])
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == files


def test_the_runner_checks_data_and_models_before_its_first_notebook(data_dir, tmp_path, monkeypatch):
    """A missing data file or a model that cannot be loaded stops the run at once, before anything is written."""
    empty = tmp_path / "data"
    empty.mkdir()
    monkeypatch.setenv("PAPA_DATA_DIR", str(empty))
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match=re.escape(f"no data for task sst2 split train under $PAPA_DATA_DIR/glue/sst2 "
                                                   f"(expected train.parquet in {empty / 'glue' / 'sst2'})")):
        main(["--profile", "smoke", "--run-dir", str(run_dir)])
    monkeypatch.setenv("PAPA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match=re.escape("cannot load model 'no-such/model': the Hugging Face Hub is not "
                                                   "reachable from here")):
        main(["--profile", "smoke", "--models", "no-such/model", "--run-dir", str(run_dir)])
    assert not run_dir.exists()


def test_a_table_whose_inputs_are_missing_names_the_notebook_that_makes_them(data_dir, tmp_path):
    """Tables only read: in an empty run folder they compute nothing and say which notebook to run."""
    from papa_utils.records.runs import MissingStepError
    from papa_utils.reports.tables import ranking_agreement_table

    profile = get_profile("smoke", tasks="sst2")
    with pytest.raises(MissingStepError, match=re.escape(
            f"no probing baseline in {tmp_path / 'probe'} for minilm-l3 x sst2: notebook 02_probe_baselines makes it; "
            f"run it first (make figures NOTEBOOKS=02_probe_baselines, with the same PROFILE, MODELS, TASKS, RANKING and "
            f"PASSES)")):
        write_results(tmp_path, profile)
    with pytest.raises(MissingStepError, match=re.escape("notebook 06_gate_free_ranking makes it")):
        ranking_agreement_table(tmp_path, profile)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_wider_run_may_extend_a_narrower_runs_folder(tmp_path):
    narrow = {"profile": "cpu", "models": ["minilm-l3"], "tasks": ["sst2"], "seeds": [42]}
    wide = {**narrow, "tasks": ["sst2", "ner"]}
    claim_run_folder(tmp_path, narrow)
    (tmp_path / "run.json").write_text(json.dumps({"scope": narrow, "wall_seconds": 5.0}))  # the narrow run finished
    claim_run_folder(tmp_path, wide)
    assert json.loads((tmp_path / "run.json").read_text()) == {"scope": wide}  # the wide one has not
    with pytest.raises(RunScopeError, match="holds a run over profile cpu: models minilm-l3; tasks sst2, ner"):
        claim_run_folder(tmp_path, narrow)
    with pytest.raises(RunScopeError):  # another profile is another run
        claim_run_folder(tmp_path, {**wide, "profile": "smoke"})


def test_unknown_profile_task_and_model_names():
    with pytest.raises(KeyError, match="unknown profile 'fast'; profiles: smoke, cpu, paper"):
        get_profile("fast")
    with pytest.raises(KeyError, match="unknown task 'sst5'"):
        get_profile("smoke", tasks="sst2,sst5")


def test_write_results_is_tidy(smoke):
    profile, run_dir, _ = smoke
    table = write_results(run_dir, profile)
    assert table.groupby(["model", "task", "replaced_heads", "seed", "metric", "predictor"]).size().max() == 1
    assert table[table.predictor == "probe"].headline.sum() == len(profile.tasks) * 5 * len(profile.seeds)


def test_a_published_run_carries_its_executed_notebooks_and_links_every_figure(smoke, tmp_path):
    """What a reader of the repository opens: the run's notebooks with their outputs and figures, free of the paths
    of the machine that ran them, and an index page that links every published notebook, table and figure."""
    import nbformat

    from papa_utils.reports.publish import publish_run

    _, run_dir, _ = smoke
    root = tmp_path / "repo"
    root.mkdir()
    target = publish_run(run_dir, root)
    notebooks = sorted((target / "notebooks").glob("*.ipynb"))
    assert [p.stem for p in notebooks] == json.loads((run_dir / "run.json").read_text())["notebooks"]  # 01 to 06
    images = {}
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
        assert code and all(c.execution_count for c in code), path.name  # executed, every code cell
        assert any(c.outputs for c in code), path.name
        images[path.stem] = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
        text = path.read_text()
        absolute = [re.search(rf"(?<!\.\.){re.escape(str(folder))}", text) for folder in (run_dir.resolve(), ROOT)]
        assert absolute == [None, None], path.name  # (a relative path may pass through the same folders)
        assert notebook.metadata.papermill.parameters.run_dir == json.loads((target / "run.json").read_text())["run_dir"]
    # every figure a notebook saves is also shown in it: as many PNGs in the notebooks as figures published
    figures = sorted(p.name for p in (root / "figures" / "smoke").iterdir())
    assert sum(images.values()) == sum(f.endswith(".png") for f in figures) and images["03_partial_replacement"] >= 1
    assert sum(p.stat().st_size for p in notebooks) < 10 * 2 ** 20
    index = (target / "README.md").read_text()
    linked = set(re.findall(r"\]\(([^)]+)\)", index))
    assert {f"../../figures/smoke/{f}" for f in figures} <= linked
    assert {f"notebooks/{p.name}" for p in notebooks} | {p.name for p in target.iterdir() if p.is_file()
                                                         and p.name != "README.md"} <= linked


def test_a_published_run_says_which_numerical_code_computed_its_steps():
    from papa_utils.reports.pages import _code_lines

    what = ("(`papa_utils.records.runs.code_digest`: the modules that compute the numbers and the versions of the "
            "packages they use)")
    assert _code_lines({"profile": {}}) == []  # published before publishing recorded it
    assert _code_lines({"step_code": {"6e0bff865bf7094d": 306}}) == [
        f"- Numerical code: all 306 steps were computed by the same code, digest `6e0bff865bf7094d` {what}."]
    assert _code_lines({"step_code": {"6e0bff865bf7094d": 300, "015c66f1ed5484ad": 5, "not recorded": 1}}) == [
        f"- Numerical code: its 306 steps were computed by 2 different codes {what}: `6e0bff865bf7094d` 300, "
        f"`015c66f1ed5484ad` 5; 1 records no code (stored before steps recorded it, or damaged); its numbers mix "
        f"them."]
    assert _code_lines({"step_code": {"6e0bff865bf7094d": 300, "not recorded": 2}}) == [
        f"- Numerical code: 300 of its 302 steps were computed by code digest `6e0bff865bf7094d` {what}; 2 record no "
        f"code (stored before steps recorded it, or damaged)."]
    assert _code_lines({"step_code": {"not recorded": 2}}) == [
        "- Numerical code: none of its 2 steps records the code that computed it."]
    # steps that none of the run's invocations computed were copied in, and their times are not in the walls
    steps = [{"computed": 66, "reused": None, "recomputed": {}}, {"computed": 456, "reused": 372, "recomputed": {}}]
    copied = {"step_code": {"6e0bff865bf7094d": 828}, "invocations": [{"steps": s} for s in steps]}
    assert _code_lines(copied)[1:] == [
        "- 306 of its 828 steps were computed by none of these invocations: they were copied in from another run "
        "folder (their times count in the steps summed, not in the walls)."]
    assert len(_code_lines({**copied, "invocations": [{"steps": steps[0]}, {"steps": None}]})) == 1  # unknown
    assert len(_code_lines({**copied, "step_code": {"6e0bff865bf7094d": 522}})) == 1  # every step computed here


def test_a_readme_block_without_its_end_marker_is_not_regenerated(tmp_path):
    from papa_utils.reports.publish import write_readme_block

    text = "intro\n<!-- summary:cpu:start -->\nold\n<!-- results:cpu:start -->\nold\n"
    (tmp_path / "README.md").write_text(text)
    assert write_readme_block("cpu", tmp_path) is False and (tmp_path / "README.md").read_text() == text


def test_publishing_is_an_explicit_step_that_never_narrows_published_results(smoke, tmp_path):
    from papa_utils.reports.pages import summary_block
    from papa_utils.reports.publish import PublishError, publish_run
    from papa_utils.reports.rendering import claim_statements, findings

    _, run_dir, _ = smoke
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_text("intro\n<!-- results:smoke:start -->\nold\n<!-- results:smoke:end -->\nend\n"
                                    "<!-- summary:smoke:start -->\nold\n<!-- summary:smoke:end -->\n"
                                    "<!-- findings:smoke:start -->\nold\n<!-- findings:smoke:end -->\n")
    target = publish_run(run_dir, root)
    assert sorted(p.name for p in target.iterdir()) == [
        "README.md", "claims.json", "convergence.csv", "dev_statistics.npz", "half_heads_by_ranking.csv",
        "learning_curves.csv", "notebooks", "probe_results.csv", "ranking_agreement.csv", "ranking_comparison.csv",
        "ranking_stability.csv", "run.json", "table1.md", "table1.tex", "truncation.csv"]
    assert (root / "figures" / "smoke" / "performance_vs_dynamic_heads.png").stat().st_size > 5000
    recorded = json.loads((target / "run.json").read_text())
    step_code = recorded.pop("step_code")
    assert recorded == json.loads((run_dir / "run.json").read_text()) and not recorded["run_dir"].startswith("/")
    # the code that computed the steps: every step file of the run folder, all made by this code
    steps = sum(len(list((run_dir / folder).glob(pattern))) for folder, pattern in (
        ("averages", "*.safetensors"), ("ranking", "*.json"), ("probe", "*.json"), ("ranking_sweep", "*.json"),
        ("curve", "*.json")))
    assert steps > 100 and step_code == {code_digest(): steps}
    readme = (root / "README.md").read_text()
    said = f"- Numerical code: all {steps} steps were computed by the same code, digest `{code_digest()}`"
    assert readme.count(said) == 2  # in the results block and in the summary block
    # the fixture's run computed its steps in the notebooks' kernel, which a run of every notebook does not by default
    assert readme.startswith("intro\n<!-- results:smoke:start -->\nProduced by `make figures PROFILE=smoke "
                             "EXECUTOR=inprocess` then `make publish RUN_DIR=")
    assert "\nold\n" not in readme and "<!-- results:smoke:end -->\nend\n" in readme
    summary = readme.split("<!-- summary:smoke:start -->\n")[1]
    assert summary.startswith("Produced by `make figures PROFILE=smoke EXECUTOR=inprocess`") and "### Table 1" not in summary
    assert "| model | task | 16 examples | 64 examples |" in summary.split("|---|", 1)[0]
    claims = json.loads((target / "claims.json").read_text())
    # claim 2 along the sweep only where the run has the paper's later points, as claims.json has them
    share = {"value": 0.8, "ci_low": 0.6, "ci_high": 1.0}
    point = {"share_of_full_loss": share, "per_model": {"minilm-l3": {"share_of_full_loss": share}}}
    shutil.copytree(target, tmp_path / "swept" / "results" / "smoke")
    for sweep in ({}, {"1/2": point}, {"1/2": point, "7/8": point}):
        claims["half_heads"]["sweep"] = sweep
        (tmp_path / "swept" / "results" / "smoke" / "claims.json").write_text(json.dumps(claims))
        with_sweep = summary_block("smoke", tmp_path / "swept")
        assert ("**Claim 2 along the paper's sweep**" in with_sweep) == ("7/8" in sweep)
    said = claim_statements(claims)["half_heads"]
    assert said.startswith("On the ")
    assert ("\n\n**Claim 2 along the paper's sweep** (`claims.json`, the rule in [docs/method.md](docs/method.md"
            f"#verdicts)): on the {said[len('On the '):]}.\n") in with_sweep
    assert "already lost at 1/2: minilm-l3 0.80 [0.60, 1.00]; at 7/8: minilm-l3 0.80 [0.60, 1.00]." in with_sweep
    half_heads = pd.read_csv(target / "half_heads_by_ranking.csv")
    assert list(dict.fromkeys(half_heads.ranking)) == ["gates", "input_dependence", "random"]
    assert "**Claim 2 with the half of the heads each ranking picks**" in summary
    assert "| half of the heads chosen by | seeds | all models | minilm-l3 |" in summary
    index = (target / "README.md").read_text()  # the run's own page carries the whole results block
    assert readme.split("<!-- results:smoke:start -->\n")[1].split("<!-- results:smoke:end -->")[0] in index
    for sentence in claim_statements(json.loads((target / "claims.json").read_text())).values():
        assert sentence in readme  # the README says what claims.json says
    said = readme.split("<!-- findings:smoke:start -->\n")[1].split("<!-- findings:smoke:end -->")[0]
    assert said.startswith(findings(json.loads((target / "claims.json").read_text()),
                                    pd.read_csv(target / "convergence.csv")).rstrip("\n") + " Generated from ")
    assert said.startswith("**What it says.**") and "\n\n**Caveats.**" in said
    assert "resample seeds and dev examples (paired bootstrap)" in readme  # the run kept its dev statistics
    assert "### Can a cheap statistic replace the gates?" in readme and "| input_dependence | 9 |" in readme
    assert "### How stable the head ranking is" in readme and "| gates | minilm-l3 | " in readme
    assert "resumed" not in readme
    for line in (target / "table1.md").read_text().splitlines():
        assert line in readme
    assert "### How the verdict moves with the probe's training data" in readme

    def copy_of_run(name, **changes):
        copy = tmp_path / name
        shutil.copytree(run_dir / "results", copy / "results")
        shutil.copytree(run_dir / "figures", copy / "figures")
        run = json.loads((run_dir / "run.json").read_text())
        run.update(changes)
        (copy / "run.json").write_text(json.dumps({k: v for k, v in run.items() if k not in changes or v is not None}))
        return copy

    published = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    scope = json.loads((run_dir / "run.json").read_text())["scope"]
    with pytest.raises(RunScopeError, match=re.escape("results/smoke/ holds a run over profile smoke: models "
                                                      "minilm-l3; tasks sst2, mrpc, ner; seeds 42, 43; heads ranked by gates; packed passes; "
                                                      "the run in")):
        publish_run(copy_of_run("narrow", scope={**scope, "tasks": ["sst2"]}), root)
    with pytest.raises(PublishError, match="did not finish \\(its run.json has no wall time\\)"):
        publish_run(copy_of_run("unfinished", wall_seconds=None), root)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == published  # nothing was touched
    with pytest.raises(RunScopeError, match="heads ranked by gates; packed passes; the run in .* covers only .* "
                                            "heads ranked by input_dependence"):  # not the profile's own ranking
        publish_run(copy_of_run("ranked", scope={**scope, "ranking": "input_dependence"}), root)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == published  # nothing was touched
    publish_run(copy_of_run("same"), root)  # the same scope again (e.g. a rerun at a newer commit) is fine
    # results made when the profile ranked heads another way give way to a run of the profile as it is now
    older = json.loads((target / "run.json").read_text())
    (target / "run.json").write_text(json.dumps({**older, "scope": {**scope, "ranking": "variance"}}))
    run_settings = json.loads((run_dir / "run.json").read_text())["profile"]
    with pytest.raises(RunScopeError, match="heads ranked by variance"):  # made under another definition
        publish_run(copy_of_run("then", profile={**run_settings, "epochs": 15}), root)
    publish_run(copy_of_run("now"), root)
    assert json.loads((target / "run.json").read_text())["scope"]["ranking"] == "gates"
    # and results made with padded passes (scopes without "passes" were) give way to the packed run the same way
    older = json.loads((target / "run.json").read_text())
    (target / "run.json").write_text(json.dumps({**older, "scope": {k: v for k, v in scope.items() if k != "passes"}}))
    with pytest.raises(RunScopeError, match="padded passes; the run in .* covers only .* packed passes"):
        publish_run(copy_of_run("then2", profile={**run_settings, "epochs": 15}), root)
    publish_run(copy_of_run("now2"), root)
    assert json.loads((target / "run.json").read_text())["scope"]["passes"] == "packed"


def test_references_stand_beside_every_baseline(smoke):
    """The trivial predictor on the same dev subset, computed here from the data alone, and the attention-free
    probe (same seeds) sit in the results and in Table 1."""
    profile, run_dir, results = smoke
    train, dev = task_data("sst2", "train", 64), task_data("sst2", "validation", 64)
    majority = train.frame.label.value_counts().idxmax()
    trivial = results[(results.predictor == "trivial") & (results.task == "sst2")]
    assert list(trivial.value) == pytest.approx([100 * (dev.frame.label == majority).mean()] * len(profile.seeds))
    assert set(trivial.seed) == set(profile.seeds)
    free = results[(results.predictor == "attention_free") & results.headline]
    assert len(free) == len(profile.tasks) * len(profile.seeds) and (free.replaced_heads == 0).all()
    table = (run_dir / "results" / "table1.md").read_text()
    assert "| trivial | attention-free |" in table and "learned signal lost" in table
    claims = json.loads((run_dir / "results" / "claims.json").read_text())
    # every cell is either in the claims or left out with its reason
    assert claims["all_heads"]["learned_signal_lost"]["points"] + \
        claims["all_heads"]["learned_signal_lost"]["undefined_points"] + len(claims["left_out"]) == len(profile.tasks)
    assert all(why.startswith("baseline ") for why in claims["left_out"].values())


def test_learning_curve_at_the_main_runs_size_reproduces_the_main_run(smoke, smoke_threads):
    """The curve's subsets are the main run's (the first n of one order): at n = 64, its baseline, PAPA and
    attention-free probes equal the sweep's k = 0, k = all and attention-free results of the same seed."""
    profile, run_dir, _ = smoke
    curve = pd.read_csv(run_dir / "results" / "learning_curves.csv")
    assert set(curve.train_examples) == {16, 64} and set(curve.task) == {"sst2"}
    stored = [json.loads(p.read_text()) for p in (run_dir / "curve").glob("*.json")]
    assert {r["replaced_heads"]: r["heads"] for r in stored if r["predictor"] == "probe"} == {0: [], 36: "all"}
    assert set(curve.configuration) == {"baseline", "PAPA", "attention_free", "trivial"}
    at_64 = curve[curve.train_examples == 64].set_index("configuration")["value"]
    free = json.loads((run_dir / "probe" / "minilm-l3__sst2__k0__embeddings__seed42.json").read_text())
    assert at_64["baseline"] == pytest.approx(probe_record(run_dir, "sst2", 0, 42)["metrics"]["accuracy"], abs=1e-9)
    assert at_64["PAPA"] == pytest.approx(probe_record(run_dir, "sst2", 36, 42)["metrics"]["accuracy"], abs=1e-9)
    assert at_64["attention_free"] == pytest.approx(free["metrics"]["accuracy"], abs=1e-9)
    assert (run_dir / "figures" / "learning_curves_minilm-l3.png").stat().st_size > 5000
    # notebook 5 says what its curve shows, read on the claims' cells (claims.json)
    from papa_utils.reports.rendering import probe_strength_sentence
    from papa_utils.reports.statistics import curve_summary
    from papa_utils.reports.verdicts import probe_strength

    said = probe_strength_sentence(probe_strength(curve_summary(curve), json.loads(
        (run_dir / "results" / "claims.json").read_text())["left_out"]), profile.curve_seeds)
    assert said in notebook_text(run_dir / "05_probe_strength.ipynb").splitlines()


def test_every_result_keeps_the_per_example_counts_of_its_metric(smoke):
    """What the paired bootstrap resamples: each record's dev statistics sum to exactly its headline metric, and
    results/dev_statistics.npz holds them for every row of probe_results.csv."""
    from papa_utils.reports.statistics import statistics_key
    from papa_utils.core.metrics import metric_from_statistics
    from papa_utils.reports.statistics import read_statistics

    profile, run_dir, results = smoke
    records = [json.loads(p.read_text()) for p in (run_dir / "probe").glob("*.json")]
    for r in records:
        metric = get_task(r["task"]).metric
        stats = np.asarray(r["dev_statistics"])
        assert len(stats) == r["dev_examples"]
        assert metric_from_statistics(metric, stats.sum(0)) == pytest.approx(r["metrics"][metric], abs=1e-9)
    saved = read_statistics(run_dir / "results")
    heads = results[results.headline]
    assert set(saved) == {statistics_key(r.model, r.task, r.predictor, r.replaced_heads, r.seed)
                          for r in heads.itertuples()}


def test_a_run_ranked_another_way_never_shares_a_folder_with_the_gates_run(smoke):
    """The head ranking decides every partial result: a run with another ranking is another run."""
    _, run_dir, _ = smoke
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit, match=re.escape("heads ranked by gates; packed passes. This run covers profile "
                                                   "smoke: models minilm-l3; tasks sst2, mrpc, ner; seeds 42, 43; "
                                                   "heads ranked by input_dependence")):
        main(["--profile", "smoke", "--ranking", "input_dependence", "--run-dir", str(run_dir)])
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == files
    with pytest.raises(SystemExit, match="unknown ranking 'gate'; rankings: gates, input_dependence, variance, random"):
        main(["--profile", "smoke", "--ranking", "gate"])


def test_truncation_is_reported_at_the_profiles_length(smoke):
    profile, run_dir, _ = smoke
    table = pd.read_csv(run_dir / "results" / "truncation.csv")
    assert set(table.L) == {32, 64, 128} and set(table[table.used].L) == {32}  # smoke: L = 32 for every task
    for column in ("train_truncated", "dev_truncated"):
        for _, part in table.groupby(["model", "task"]):
            shares = part.sort_values("L")[column].to_numpy()
            assert (np.diff(shares) <= 0).all() and ((shares >= 0) & (shares <= 1)).all()  # longer L cuts less
    mrpc = table[(table.task == "mrpc") & (table.L == 32)].iloc[0]
    assert mrpc.dev_truncated > 0.5 and mrpc.train_examples == 64  # 15 slots per sentence of a pair: most are cut


def test_the_cpu_profiles_lengths_truncate_at_most_three_percent():
    """With padding free, each task's L is the one that cuts at most 3% of the training and dev examples, as the
    published truncation table (notebook 2, every model's tokenizer) measured them."""
    profile = get_profile("cpu")
    table = pd.read_csv(ROOT / "results" / "cpu" / "truncation.csv")
    for model_name in profile.models:
        for task in profile.tasks:
            row = table[(table.model == model_name) & (table.task == task) & (table.L == profile.length(task))]
            assert len(row) == 1, (model_name, task, profile.length(task))
            assert row.train_truncated.item() <= 0.03 and row.dev_truncated.item() <= 0.03, (model_name, task)


def test_lengths_and_sizes_per_task():
    from dataclasses import replace

    profile = replace(get_profile("cpu"), length_override=None, task_lengths={"sst2": 128},
                      task_sizes={"mnli": {"dev_examples": 3000}}, dev_examples=None)
    assert [profile.length(t) for t in ("sst2", "cola", "ner")] == [128, 64, 128]  # else the task's default
    assert replace(profile, length_override=32).length("sst2") == 32
    assert profile.size("minilm-l3", "dev_examples", "mnli") == 3000 and profile.size("minilm-l3", "dev_examples", "cola") is None
    # every model gets the same sizes: there is no per-model cap to give one model a different protocol
    assert {m: profile.sizes(m, "mnli") for m in ("minilm-l3", "mpnet-base")} == dict.fromkeys(
        ("minilm-l3", "mpnet-base"), profile.sizes("minilm-l3", "mnli"))
    with pytest.raises(TypeError, match="model_sizes"):
        replace(profile, model_sizes={"mpnet-base": {"dev_examples": 500}})
    with pytest.raises(ValueError, match=r"^sweep_fractions \(0, 0.875, 1\) lack \[0.5\]: Table 1 and the claims need no "
                                         r"head, half of them and all of them replaced$"):
        replace(profile, sweep_fractions=(0, 7 / 8, 1))
    robustness = get_profile("cpu-robustness")
    with pytest.raises(ValueError, match=re.escape(
            "4 random orders need as many seeds (each order runs with a seed of its own, and the claims pair them by "
            "seed); seeds are (42, 43, 44): lower random_orders or add seeds")):
        replace(robustness, random_orders=4)
    assert replace(robustness, random_orders=5, compare_rankings=("gates", "variance")).random_orders == 5  # none run


def test_convergence_reads_the_last_epochs_of_every_probe():
    """Per model x task x predictor x k: the mean over seeds of the last epochs, the last epoch's gain and the tail's
    slope in epochs at the peak rate; a curve ended flat only when that slope is under half a point, so a curve
    that still climbs or falls fails, and under a linear decay a small last gain is not enough."""
    from papa_utils.reports.tables import convergence_table

    def record(seed, k, values, predictor="probe"):
        return {"model": "m", "task": "sst2", "predictor": predictor, "replaced_heads": k, "total_heads": 4,
                "seed": seed, "curve": [{"epoch": e + 1, "accuracy": v} for e, v in enumerate(values)]}

    records = [record(0, 0, [70, 80.4, 81, 81.2]), record(1, 0, [70, 80.4, 81, 81.2]),  # +0.4 per epoch: flat
               record(0, 4, [60, 70, 75, 76]), record(1, 4, [60, 70, 75, 77]),  # +1.5: still climbing
               record(0, 0, [50, 52, 51, 50], "attention_free")]  # falling by 1 per epoch: not flat either
    table = convergence_table(records).set_index(["predictor", "replaced_heads"])
    assert list(table.columns[-8:]) == ["epoch_2", "epoch_3", "epoch_4", "seeds", "last_gain", "tail_slope",
                                        "tail_slope_se", "converged"]
    assert table.loc[("probe", 0), "epoch_4"] == pytest.approx(81.2)
    assert table.loc[("probe", 0), "tail_slope"] == pytest.approx(0.4) and table.loc[("probe", 0), "converged"]
    assert table.loc[("probe", 4), "last_gain"] == pytest.approx(1.5) and not table.loc[("probe", 4), "converged"]
    assert table.loc[("attention_free", 0), "tail_slope"] == pytest.approx(-1)
    assert not table.loc[("attention_free", 0), "converged"] and table.loc[("probe", 0), "seeds"] == 2
    # the same curves under a linear decay over 4 epochs: epochs 2-4 ran at 5/8, 3/8 and 1/8 of the peak rate
    # (training done 1.5, 1.875, 2 peak-rate epochs), so the flat one's +0.6 and +0.2 read as 1.6 points per epoch
    # at the peak rate: still moving (both seeds alike: no noise to hide in)
    linear = convergence_table(records, "linear").set_index(["predictor", "replaced_heads"])
    assert linear.loc[("probe", 0), "tail_slope"] == pytest.approx(1.6) and not linear.loc[("probe", 0), "converged"]
    # a slope within twice its standard error over seeds shows no movement beyond their noise: it passes
    swinging = [record(0, 0, [70, 80, 82, 84]), record(1, 0, [70, 80, 82, 80]), record(2, 0, [70, 80, 82, 82.6])]
    noisy = convergence_table(swinging).set_index(["predictor", "replaced_heads"]).loc[("probe", 0)]
    assert noisy.tail_slope == pytest.approx(1.1) and noisy.tail_slope_se == pytest.approx(np.std([2, 0, 1.3], ddof=1)
                                                                                         / np.sqrt(3))
    assert noisy.converged


def test_baseline_features_are_kept_on_disk_only_while_the_cache_has_room(tmp_path, monkeypatch):
    """The averages pass saves the baseline's training features for notebook 2 only while the cache stays within
    FEATURE_CACHE_GB; beyond it the k = 0 probes compute them again, with the same numbers."""
    from papa_utils.runner import steps, sweeps

    profile = get_profile("smoke", tasks="sst2")
    kept = tmp_path / "kept"
    steps.average_attention(kept, profile, "minilm-l3", "sst2")
    path = steps.baseline_features_path(kept, "minilm-l3", "sst2", profile.length("sst2"))
    assert path.exists() and steps.feature_cache_gb(kept) <= steps.FEATURE_CACHE_GB
    monkeypatch.setattr(steps, "FEATURE_CACHE_GB", 0.0)
    full = tmp_path / "full"
    steps.average_attention(full, profile, "minilm-l3", "sst2")
    assert not (full / "features").exists() or not any((full / "features").iterdir())
    assert steps.features_gb(cached_model("minilm-l3")[0], encoded("minilm-l3", task_data("sst2", "train", 64), 32)) > 0
    results = [sweeps.probe_sweep(folder, profile, "minilm-l3", "sst2", [0], seeds=(42,))[0]["metrics"]
               for folder in (kept, full)]
    assert results[0] == results[1] and not path.exists()  # the saved features were used, then removed


def test_notebooks_executed_again_replace_only_theirs_in_a_published_run(smoke, tmp_path):
    """A run of the same computation that executed some notebooks again: those notebooks and the files they made
    replace the published ones, the others stay, and run.json and the README block say which were executed again,
    when. A run of other settings is refused."""
    from papa_utils.reports.publish import PublishError, publish_run, republish_notebooks

    _, run_dir, _ = smoke
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_text("<!-- results:smoke:start -->\n<!-- results:smoke:end -->\n")
    target = publish_run(run_dir, root)
    before = {p.name: p.read_text() for p in (target / "notebooks").glob("*.ipynb")}
    again = tmp_path / "again"
    shutil.copytree(run_dir, again)
    run = json.loads((again / "run.json").read_text())
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - 5))
    again_invocation = {**{k: v for k, v in run["invocations"][-1].items() if k != "memory"},  # not sampled
                        "notebooks": ["04_model_strength"], "git_commit": "f" * 40,
                        "dirty": False, "wall_seconds": 12.0, "peak_memory_gb": 0.5, "started": started,
                        "notebook_seconds": {"04_model_strength": 12.0},
                        "steps": {"computed": 0, "reused": 7, "recomputed": {}}}
    run.update(invocations=run["invocations"] + [again_invocation], run_dir=str(again))
    (again / "run.json").write_text(json.dumps(run))
    marked = json.loads((again / "results" / "claims.json").read_text())
    marked["cells_in_claims"] = ["marked"]
    (again / "results" / "claims.json").write_text(json.dumps(marked))
    notebook = json.loads((again / "04_model_strength.ipynb").read_text())
    notebook["cells"][0]["source"] = "# executed again"
    (again / "04_model_strength.ipynb").write_text(json.dumps(notebook))
    republish_notebooks(again, root)
    assert json.loads((target / "claims.json").read_text())["cells_in_claims"] == ["marked"]
    after = {p.name: p.read_text() for p in (target / "notebooks").glob("*.ipynb")}
    assert sorted(after) == sorted(before) and "# executed again" in after["04_model_strength.ipynb"]
    assert all(after[name] == text for name, text in before.items() if name != "04_model_strength.ipynb")
    recorded = json.loads((target / "run.json").read_text())
    assert recorded["git_commit"] == json.loads((run_dir / "run.json").read_text())["git_commit"]
    first = json.loads((run_dir / "run.json").read_text())["invocations"]
    assert recorded["invocations"] == first + [again_invocation]  # the published run's, and the one that executed 04
    assert recorded["wall_seconds"] == pytest.approx(first[0]["wall_seconds"] + 12.0)
    assert recorded["peak_memory_gb"] == first[0]["peak_memory_gb"]  # the larger of the two
    readme = (root / "README.md").read_text()
    memory = recorded["memory"]  # sampled by the first invocation only
    assert memory == {**{k: first[0]["memory"][k] for k in ("anonymous_gb", "resident_gb", "file_backed_gb")},
                      "invocations": 1}
    assert (f"- **Wall time {recorded['wall_seconds'] / 60:.1f} min**, summed over its 2 invocations; peak resident "
            f"memory {recorded['peak_memory_gb']:.1f} GiB (the largest process of any of them); the run's "
            f"processes, in the 1 of its 2 invocations that sampled them, together held at most "
            f"{memory['anonymous_gb']:.1f} GiB of anonymous memory, and {memory['resident_gb']:.1f} GiB resident at "
            f"their peak, {memory['file_backed_gb']:.1f} GiB of it pages mapped from files (the feature cache, the "
            f"weights, the libraries), which the kernel can drop and read again.") in readme
    assert "  2. Commit `fffffff`, notebook 04: 0.2 min, peak 0.5 GiB; computed 0 steps and found 7 done." in readme
    run["profile"]["epochs"] += 1
    (again / "run.json").write_text(json.dumps(run))
    with pytest.raises(PublishError, match="is not the published smoke run's computation"):
        republish_notebooks(again, root)


def test_a_run_without_a_learning_curve_or_ranking_comparison_says_why():
    """Notebooks 5 and 6 print why they have nothing to show: the profile asks for none, or the run was narrowed
    away from what the profile runs it on."""
    from papa_utils.settings.profiles import why_absent

    assert why_absent(get_profile("cpu"), "learning curve") == (
        "this run has no learning curve: the cpu profile asks for none (profiles that run one: smoke, cpu-robustness)")
    assert why_absent(get_profile("cpu"), "ranking comparison") == (
        "this run has no ranking comparison: the cpu profile asks for none (profiles that run one: smoke, "
        "cpu-robustness)")
    assert why_absent(get_profile("smoke", tasks="mrpc"), "learning curve") == (
        "this run has no learning curve: the smoke profile runs it on models minilm-l3 and tasks sst2, which this run "
        "(models minilm-l3; tasks mrpc) leaves out")
    assert why_absent(get_profile("smoke", tasks="mrpc"), "ranking comparison") is None
    assert why_absent(get_profile("cpu-robustness"), "learning curve") is None
