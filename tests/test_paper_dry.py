"""The paper profile's path on this machine. Fast tier: the profile's settings, and the MRPC cells of two tiny families
run as jobs of submitit's local executor on capped splits. Slow tier: the whole of `make figures PROFILE=paper-dry
WORKERS=2` (the CLI it calls), i.e. the paper's protocol (streaming probe, fp32, gates, whole splits) on tiny
random BERT, RoBERTa and DeBERTa v1 built into a local models folder and loaded from it as Hub ids are, each
(model, task) cell a job with two workers, then the notebooks, which must find every step done."""
import json
import os
from dataclasses import replace

import pandas as pd
import pytest

from papa_utils.core import backbones
from papa_utils.runner import cost, pipeline
from papa_utils.settings import profiles
from papa_utils.runner.executor import cell_done, cell_records, run_cells
from papa_utils.settings.choices import TINY_RANDOM
from papa_utils.reports.tables import step_provenance
from papa_utils.settings.tasks import load_task

STEP_FOLDERS = ("averages", "probe", "ranking")
TASKS = ("cola", "mrpc", "rte")


def test_the_dry_run_is_the_paper_profiles_protocol_on_whole_splits():
    """What the slow tier's whole dry run would otherwise be the only check of: paper-dry is the paper profile's
    protocol, with no size anywhere (whole splits), cheaper only in L, seeds and epochs."""
    paper, dry = profiles.get_profile("paper"), profiles.get_profile("paper-dry")
    assert dry.models == tuple(TINY_RANDOM) and sorted(TINY_RANDOM.values()) == ["bert", "bert", "deberta", "deberta",
                                                                                  "roberta", "roberta"]
    assert len(dry.models) == len(paper.models) and dry.tasks == ("cola", "mrpc", "rte")
    for name in ("protocol", "precision", "ranking", "compare_rankings", "compare_models", "random_orders",
                 "ranking_stability", "curve_models", "curve_tasks", "curve_sizes", "task_sizes",
                 "sweep_fractions", "probe_lr", "gate_lr", "average_examples", "train_examples", "dev_examples",
                 "rank_examples"):
        assert getattr(dry, name) == getattr(paper, name), name
    assert (dry.protocol, dry.precision, dry.ranking) == ("streaming", "fp32", "gates")
    for model in dry.models:
        for task in dry.tasks:
            assert dry.sizes(model, task) == dict.fromkeys(profiles.SIZE_FIELDS), (model, task)
    assert (dry.length_override, dry.seeds, dry.epochs, dry.rank_epochs) == (32, (42, 43), 1, 1)


def test_one_cell_of_two_families_runs_the_paper_path_as_local_jobs(tmp_path, monkeypatch):
    """MRPC on tiny BERT and DeBERTa v1 (the two ways heads are replaced: the attention registry and the dropout
    hook; capped splits), each cell a job of the local executor, two at a time: both ran in processes of their
    own, at the same time, and left every step of the paper's path (averages, streaming probes at k = 0, 4, 7, 8
    and the references, gates), which the steps run again here (as the notebooks run them) find done."""
    monkeypatch.setenv("PAPA_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("PAPA_PROGRESS", "0")
    backbones.cached_model.cache_clear()
    models = tuple(m for m, family in TINY_RANDOM.items() if family in ("bert", "deberta") and "-tiny-" in m)
    assert len(models) == 2
    profile = replace(profiles.get_profile("paper-dry"), models=models, tasks=("mrpc",),
                      task_sizes={"mrpc": {"average_examples": 48, "train_examples": 40, "dev_examples": 24,
                                           "rank_examples": 20}})
    run_dir = tmp_path / "run"
    try:
        finished = run_cells(pipeline.cell_steps, run_dir, profile, "local", workers=2,
                             precisions={m: "fp32" for m in models})
        assert sorted(finished) == sorted(f"{m.replace('/', '--')}__mrpc" for m in models)
        assert all(cell_done(run_dir, profile, m, "mrpc") for m in models)
        assert sorted(cell_records(run_dir)) == sorted(finished)  # what run.json records of the cells
        assert {m["device"] for m in finished.values()} == {"cpu"} and {m["precision"] for m in finished.values()} == {"fp32"}
        assert len({m["job_id"] for m in finished.values()}) == 2 and str(os.getpid()) not in {
            m["job_id"] for m in finished.values()}
        [a, b] = sorted((m["started"], m["finished"]) for m in finished.values())
        assert a[1] > b[0], (a, b)  # the two workers ran at the same time
        jobs_left = step_files(run_dir)
        assert sum(name.startswith("averages/") for name in jobs_left) == 2
        assert sum(name.startswith("ranking/") for name in jobs_left) == 2
        assert sum(name.startswith("probe/") for name in jobs_left) == 2 * (4 * 2 + 2 * 2)
        record = json.loads(next((run_dir / "probe").glob("*k4__seed42.json")).read_text())
        assert record["protocol"] == "streaming" and record["ranking"] == "gates" and record["dev_examples"] == 24
        assert json.loads(next((run_dir / "ranking").glob("*.json")).read_text())["method"] == "gates"
        for model in models:  # what the notebooks call finds every step done: nothing is written again
            pipeline.cell_steps(run_dir, profile, model, "mrpc")
        assert step_files(run_dir) == jobs_left
    finally:
        backbones.cached_model.cache_clear()


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper_dry")
    notebooks = pipeline.run_notebooks

    def run_notebooks_after_a_snapshot(profile, run_dir, *args, **kwargs):  # what the jobs left, to the nanosecond
        (folder / "steps_before_notebooks.json").write_text(json.dumps(step_files(run_dir)))
        return notebooks(profile, run_dir, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAPA_MODELS_DIR", str(folder / "models"))  # the tiny models are built here, not in the cache
        patch.setenv("PAPA_PROGRESS", "0")
        patch.setattr(pipeline, "run_notebooks", run_notebooks_after_a_snapshot)
        pipeline.main(["--profile", "paper-dry", "--executor", "local", "--workers", "2",
                       "--run-dir", str(folder / "run")])
    return folder / "run"


def step_files(run_dir) -> dict:
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for folder in STEP_FOLDERS
            for p in sorted((run_dir / folder).glob("*")) if p.is_file()}


@pytest.mark.slow
def test_every_cell_ran_as_a_job_and_two_ran_at_once(dry_run):
    run = json.loads((dry_run / "run.json").read_text())
    assert run["executor"] == "local" and "wall_seconds" in run
    cells = run["cells"]
    assert sorted(cells) == sorted(f"{m.replace('/', '--')}__{t}" for m in TINY_RANDOM for t in TASKS)
    assert {c["device"] for c in cells.values()} == {"cpu"} and {c["precision"] for c in cells.values()} == {"fp32"}
    assert len({c["job_id"] for c in cells.values()}) == 18 and str(os.getpid()) not in {c["job_id"] for c in cells.values()}
    spans = sorted((c["started"], c["finished"]) for c in cells.values())
    assert any(a[1] > b[0] for a, b in zip(spans, spans[1:])), spans  # at least two workers at the same time
    [invocation] = run["invocations"]  # the jobs' steps count as the invocation that submitted them
    assert invocation["finished"] and invocation["cells_wall_seconds"] > 0
    assert invocation["wall_seconds"] >= invocation["cells_wall_seconds"] + sum(invocation["notebook_seconds"].values()) - 1
    assert {s["invocation"] for s in step_provenance(dry_run)} == {invocation["invocation"]}
    assert invocation["steps"]["computed"] == len(step_provenance(dry_run)) > 0
    assert run["precision"] == {m: {"asked": "fp32", "used": "fp32"} for m in TINY_RANDOM}


@pytest.mark.slow
def test_the_notebooks_found_every_step_done(dry_run):
    """The step files after the notebooks are exactly those the jobs left, none written again: 18 averages, 18
    gate rankings, and per cell its sweep points x 2 seeds (4 on the tiny models' 8 heads: 0, 4, 7, 8; 5 on the
    small ones' 18: 0, 9, 16, 17, 18) + the attention-free and trivial references x 2 seeds."""
    before = json.loads((dry_run.parent / "steps_before_notebooks.json").read_text())
    assert step_files(dry_run) == before
    assert sum(name.startswith("averages/") for name in before) == 18
    assert sum(name.startswith("ranking/") for name in before) == 18
    assert sum(name.startswith("probe/") for name in before) == 3 * (3 * (4 * 2 + 2 * 2) + 3 * (5 * 2 + 2 * 2))


@pytest.mark.slow
def test_the_paper_protocol_on_whole_splits(dry_run):
    results = pd.read_csv(dry_run / "results" / "probe_results.csv")
    probe = results[(results.predictor == "probe") & results.headline]
    assert set(probe.model) == set(TINY_RANDOM) and set(probe.task) == set(TASKS)
    assert set(probe[probe.model.str.contains("-tiny-")].replaced_heads) == {0, 4, 7, 8}  # 2 layers x 4 heads
    assert set(probe[probe.model.str.contains("-small-")].replaced_heads) == {0, 9, 16, 17, 18}  # 3 x 6 heads
    assert set(probe.seed) == {42, 43}
    for task in TASKS:
        rows = probe[probe.task == task]
        assert set(rows.train_examples) == {len(load_task(task, "train"))}
        assert set(rows.dev_examples) == {len(load_task(task, "validation"))}
    record = json.loads(next((dry_run / "probe").glob("*k4__seed42.json")).read_text())
    assert record["protocol"] == "streaming" and record["ranking"] == "gates"
    rankings = [json.loads(p.read_text()) for p in sorted((dry_run / "ranking").glob("*.json"))]
    assert {r["method"] for r in rankings} == {"gates"}
    assert sorted({len(r["ranking"]) for r in rankings}) == [8, 18]  # the tiny models' 2 x 4 heads, the small 3 x 6
    assert (dry_run / "results" / "table1.md").exists() and (dry_run / "results" / "claims.json").exists()
    # Hub ids have a "/": figures of every model and task are files of the figures folder, not in folders of their own
    figures = list((dry_run / "figures").iterdir())
    assert all(p.is_file() for p in figures)
    assert {f"average_attention_{m.replace('/', '--')}_{t}.png" for m in TINY_RANDOM for t in TASKS} <= {
        p.name for p in figures}


@pytest.mark.slow
def test_results_from_the_jobs_come_back_into_results_by_publishing(dry_run, tmp_path):
    """`make publish RUN_DIR=<run>` after a run whose cells ran as jobs: results/<profile>/ and the README block."""
    from papa_utils.reports.publish import publish_run

    (tmp_path / "README.md").write_text("<!-- results:paper-dry:start -->\n<!-- results:paper-dry:end -->\n")
    published = publish_run(dry_run, root=tmp_path)
    assert published == tmp_path / "results" / "paper-dry"
    assert (published / "probe_results.csv").read_text() == (dry_run / "results" / "probe_results.csv").read_text()
    block = (tmp_path / "README.md").read_text()
    assert "Produced by `make figures PROFILE=paper-dry` then `make publish RUN_DIR=" in block  # local: the default
    assert "- **Cells as jobs** (`EXECUTOR=local`): 18 cells, " in block and "this run waited " in block
    # whole splits, the same for every model, stated per task above Table 1
    assert "the constant matrices average whole split training examples" in block
    assert "- cola: 8551 training, 1043 dev examples, L 32, for every model" in block
    assert "- mrpc: 3668 training, 408 dev examples, L 32, for every model" in block
    assert "- rte: 2490 training, 277 dev examples, L 32, for every model" in block
    assert (tmp_path / "figures" / "paper-dry" / "performance_vs_dynamic_heads.png").exists()


@pytest.mark.slow
def test_claim_3s_test_runs_on_the_paper_grids_shape(dry_run):
    """Six models on three tasks: the model-level test enumerates the 6! relabellings (its null would be 720^3
    combinations if each task were permuted on its own). Random models carry no signal and predict one class (their
    baselines tie), so the test runs here on the dry run's Table 1 cells and protocols with baselines and drops put
    in by hand, rising with the model's place in the profile: p = 1/720."""
    from papa_utils.reports.statistics import protocol_per_task, read_statistics, table1
    from papa_utils.reports.verdicts import model_level_test

    results = pd.read_csv(dry_run / "results" / "probe_results.csv")
    t1 = table1(results, read_statistics(dry_run / "results"), n_boot=200)
    main = t1[t1.headline].assign(in_claims=True)
    place = main.model.map({m: i for i, m in enumerate(TINY_RANDOM)})
    test = model_level_test(main.assign(baseline=50 + place, relative_drop=0.01 * (1 + place)),
                            protocol_per_task(results))
    assert test["relabellings"] == 720 and test["exact"] and len(test["models"]) == 6
    assert test["p_greater"] == pytest.approx(1 / 720)
    assert test["tasks_measured"] == 3 and 0 < test["p_greater"] <= 1
    claims = json.loads((dry_run / "results" / "claims.json").read_text())
    assert "strength_model_level" in claims and "sweep" in claims["half_heads"]


def test_the_cost_model_counts_what_a_cell_runs_through_the_backbone(tmp_path, monkeypatch):
    """``cell_passes`` (the README's per-cell cost) against a cell's backbone calls, counted: a paper-dry cell on
    capped splits, with and without the ranking's stability (another seed, a disjoint subset)."""
    from dataclasses import replace

    monkeypatch.setenv("PAPA_MODELS_DIR", str(tmp_path / "models"))
    backbones.cached_model.cache_clear()
    model_name, task = "papa-dry/bert-tiny-random", "mrpc"
    base = replace(profiles.get_profile("paper-dry"), models=(model_name,), tasks=(task,),
                   task_sizes={task: {"average_examples": 48, "train_examples": 40, "dev_examples": 24,
                                      "rank_examples": 20}}, rank_epochs=2)
    try:
        for profile in (base, replace(base, ranking_stability=True)):
            model = backbones.cached_model(model_name)[0]
            with cost.counting_backbone_examples(model) as counted:
                pipeline.cell_steps(tmp_path / f"run_{profile.ranking_stability}", profile, model_name, task)
            predicted = cost.cell_passes(profile, model_name, task, 8, len(load_task(task, "train")),
                                             len(load_task(task, "validation")))
            assert counted == predicted
        assert predicted == {"forward": 48 + 5 * 2 * 1 * (40 + 24), "forward_backward": 3 * 2 * 20}
    finally:
        backbones.cached_model.cache_clear()
