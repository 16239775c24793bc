"""The grid's cells as jobs (papa_utils.runner.executor): local processes through submitit, Slurm through a stand-in for
its commands (tests/fake_slurm.py); failures and time-outs reported by cell with their log; a rerun submits only
the cells that are not done; clear errors for an executor that cannot run here. The cells' steps are a stub
(``stub_steps``), so these tests check the executor, not the pipeline (tests/test_paper_dry.py runs both)."""
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import cloudpickle
import pytest

import fake_slurm
from papa_utils.runner import executor, pipeline
from papa_utils.settings import profiles
from papa_utils.runner.executor import CellsFailed, ExecutorError, cell_done, run_cells, slurm_options

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the jobs unpickle stub_steps without tests/ on their path
PROFILE = replace(profiles.PROFILES["smoke"], models=("model-a", "model-b"), tasks=("sst2", "mrpc"))


def stub_steps(run_dir, profile, model_name, task, precision=None):
    """A cell that fails where run_dir/fail/<model>__<task> exists, sleeps where .../sleep/... does, waits while
    .../hold/... does (2 s for every cell with run_dir/slow), holds 500 MB where .../big/... does, else notes that it ran (run_dir/ran/<model>__<task>, one line per run: its process id
    and the GPUs it was given)."""
    name = f"{model_name}__{task}"
    if (run_dir / "fail" / name).exists():
        raise RuntimeError(f"simulated failure in {name}")
    if (run_dir / "sleep" / name).exists():
        time.sleep(120)
    for _ in range(600):  # held while run_dir/hold/<cell> exists (at most 2 min)
        if not (run_dir / "hold" / name).exists():
            break
        time.sleep(0.2)
    if (run_dir / "slow").exists():
        time.sleep(2)
    if (run_dir / "big" / name).exists():  # holds 500 MB (every byte written) while it runs
        held = bytearray(b"\1") * 500_000_000
        time.sleep(0.5)
        del held
    (run_dir / "ran").mkdir(exist_ok=True)
    with open(run_dir / "ran" / name, "a") as f:
        f.write(f"{os.getpid()} {os.environ.get('CUDA_VISIBLE_DEVICES') or '-'} {precision}\n")
    return {"device": "cpu"}


def ran(run_dir):
    return {p.name: len(p.read_text().splitlines()) for p in (run_dir / "ran").glob("*")}


def flag(run_dir, kind, cell):
    (run_dir / kind).mkdir(exist_ok=True)
    (run_dir / kind / cell).touch()


def test_a_failed_cell_is_reported_with_its_log_and_a_rerun_submits_only_it(tmp_path, capsys):
    flag(tmp_path, "fail", "model-b__sst2")
    with pytest.raises(CellsFailed) as failed:
        run_cells(stub_steps, tmp_path, PROFILE, "local", workers=2, poll_seconds=0.2,
                  precisions={"model-a": "bf16", "model-b": "fp32"})
    message = str(failed.value)
    log = tmp_path / "jobs" / message.split("; log: ")[1].split("\n")[0].split("/jobs/")[1]
    assert message.startswith("1 of 4 cells did not finish:\n- model-b x sst2: failed: RuntimeError: simulated "
                              "failure in model-b__sst2; log: ")
    assert message.endswith("3 of 4 cells are done and kept; run the same command again to resubmit only the "
                            "unfinished ones.")
    assert "simulated failure in model-b__sst2" in log.read_text()  # the log named is the job's own
    assert ran(tmp_path) == {"model-a__sst2": 1, "model-a__mrpc": 1, "model-b__mrpc": 1}
    assert [cell_done(tmp_path, PROFILE, m, t) for m in PROFILE.models for t in PROFILE.tasks] == [True, True, False, True]
    given = {p.name: p.read_text().split()[2] for p in (tmp_path / "ran").glob("*")}  # each job got its model's
    assert given == {"model-a__sst2": "bf16", "model-a__mrpc": "bf16", "model-b__mrpc": "fp32"}  # precision

    (tmp_path / "fail" / "model-b__sst2").unlink()
    capsys.readouterr()
    finished = run_cells(stub_steps, tmp_path, PROFILE, "local", workers=2, poll_seconds=0.2)
    assert list(finished) == ["model-b__sst2"]
    assert "3 of 4 cells done; submitting 1 to local (2 at a time)" in capsys.readouterr().out
    assert ran(tmp_path) == {"model-a__sst2": 1, "model-a__mrpc": 1, "model-b__mrpc": 1, "model-b__sst2": 1}
    assert run_cells(stub_steps, tmp_path, PROFILE, "local") == {}  # all done: nothing submitted
    # other settings make every cell not done
    assert not cell_done(tmp_path, replace(PROFILE, epochs=3), "model-a", "sst2")


@pytest.mark.slow  # the fast tier sees two local jobs at the same time in tests/test_paper_dry.py
def test_local_workers_run_cells_at_the_same_time_in_separate_processes(tmp_path):
    (tmp_path / "slow").touch()
    finished = run_cells(stub_steps, tmp_path, PROFILE, "local", workers=2, poll_seconds=0.2)
    assert len(finished) == 4 and len({m["job_id"] for m in finished.values()}) == 4
    assert os.getpid() not in {int(line.split()[0]) for p in (tmp_path / "ran").glob("*")
                               for line in p.read_text().splitlines()}
    spans = sorted((m["started"], m["finished"]) for m in finished.values())
    assert any(a[1] > b[0] for a, b in zip(spans, spans[1:])), spans  # two jobs overlapped


def own_anonymous_gb() -> float:
    """This process's anonymous memory alone, GiB: a floor for any sample of its tree taken later while it holds
    more, whatever other processes under it (a job or kernel of an earlier test still ending) come and go."""
    import gc

    from papa_utils.records.memory import _process_kb

    gc.collect()  # what earlier tests left to collect is freed now, not while the test's memory is held
    return _process_kb(os.getpid())["anonymous"] / 1024 ** 2


def test_each_cell_records_the_peak_memory_of_its_own_process(tmp_path):
    flag(tmp_path, "big", "model-b__mrpc")
    finished = run_cells(stub_steps, tmp_path, PROFILE, "local", workers=2, poll_seconds=0.2)
    peaks = {name: marker["peak_memory_gb"] for name, marker in finished.items()}
    assert peaks["model-b__mrpc"] >= 0.5, peaks
    others = max(p for name, p in peaks.items() if name != "model-b__mrpc")
    assert peaks["model-b__mrpc"] - others >= 0.4, peaks  # each job's own, not the submitter's
    assert executor.cell_records(tmp_path)["model-b__mrpc"]["peak_memory_gb"] == peaks["model-b__mrpc"]


@pytest.mark.parametrize("arguments, gpus, expected", [
    ([], 0, ("local", 1)),  # every notebook: one cell at a time, each in its own process
    ([], 2, ("local", 2)),  # one cell per GPU
    (["--notebooks", "02_probe_baselines"], 0, ("inprocess", None)),  # a subset computes only what it reads
    (["--executor", "local", "--workers", "3"], 0, ("local", 3)),
], ids=["every notebook", "gpus", "a subset", "asked for"])
def test_a_run_that_asks_for_no_executor_runs_each_cell_in_its_own_process(tmp_path, monkeypatch, arguments, gpus,
                                                                           expected):
    ran = {}
    monkeypatch.setattr(pipeline, "check_inputs", lambda profile: None)
    monkeypatch.setattr(executor, "accelerator_count", lambda: gpus)
    monkeypatch.setattr(pipeline, "run_cells", lambda steps, run_dir, profile, kind, workers, options, precisions:
                        ran.update(cells=(kind, workers)))
    monkeypatch.setattr(pipeline, "run_notebooks", lambda profile, run_dir, notebooks, kind, *rest, **options:
                        ran.update(notebooks=kind) or run_dir)
    monkeypatch.setattr(pipeline, "precision_of", lambda profile, model: "fp32")
    pipeline.main(["--profile", "smoke", "--run-dir", str(tmp_path / "run"), *arguments])
    assert (ran.get("cells", (ran["notebooks"], None))) == expected
    assert ran["notebooks"] == expected[0]


def test_the_run_records_the_memory_of_its_cells_jobs(tmp_path, monkeypatch):
    """run.json's memory covers the cells' jobs, not only the notebooks that run after them: one sampler, already
    sampling while the jobs run, records the invocation; a job holding 600 MB of its own shows in it."""
    import subprocess

    import papermill

    samplers = []

    class Recorded(pipeline.MemorySampler):
        def __enter__(self):
            samplers.append(self)
            return super().__enter__()

    def jobs(*args, **kwargs):
        assert len(samplers) == 1 and samplers[0]._thread.is_alive()  # sampling before the first job starts
        before["anonymous_gb"] = own_anonymous_gb()
        subprocess.run([sys.executable, "-c", "import time; held = bytearray(b'\\1') * 600_000_000; time.sleep(5)"],
                       check=True)

    before = {}

    monkeypatch.setattr(pipeline, "MemorySampler", Recorded)
    monkeypatch.setattr(pipeline, "check_inputs", lambda profile: None)
    monkeypatch.setattr(pipeline, "run_cells", jobs)
    monkeypatch.setattr(papermill, "execute_notebook", lambda *args, **kwargs: None)
    pipeline.main(["--profile", "smoke", "--run-dir", str(tmp_path / "run"), "--executor", "local",
                   "--notebooks", "04_model_strength"])
    assert len(samplers) == 1  # the notebooks' record is the same sampler's
    invocation = pipeline.read_json(tmp_path / "run" / "run.json")["invocations"][-1]
    assert invocation["executor"] == "local" and invocation["memory"] == samplers[0].peak()
    assert invocation["memory"]["anonymous_gb"] >= before["anonymous_gb"] + 0.5, (before, invocation)  # the job's


def test_a_run_whose_jobs_fail_keeps_the_memory_they_took(tmp_path, monkeypatch):
    """An invocation stopped among its jobs (a failed cell, an interrupt) records the memory sampled until then."""
    from papa_utils.records.memory import MemorySampler

    sampler = MemorySampler(interval=60)  # samples only when asked, below

    def jobs(*args, **kwargs):
        sampler.sample()
        before["anonymous_gb"] = own_anonymous_gb()
        held = bytearray(b"\1") * 300_000_000  # in this process, which the sampler counts too
        sampler.sample()
        after.update(sampler.peak())
        del held
        raise CellsFailed("1 of 1 cells did not finish")

    before, after = {}, {}
    monkeypatch.setattr(pipeline, "MemorySampler", lambda: sampler)
    monkeypatch.setattr(pipeline, "check_inputs", lambda profile: None)
    monkeypatch.setattr(pipeline, "run_cells", jobs)
    with pytest.raises(SystemExit, match="^1 of 1 cells did not finish$"):
        pipeline.main(["--profile", "smoke", "--run-dir", str(tmp_path / "run"), "--executor", "local"])
    invocation = pipeline.read_json(tmp_path / "run" / "run.json")["invocations"][-1]
    assert not invocation["finished"], invocation
    assert invocation["memory"] == after, (after, invocation)  # the peak with the job's memory, not an earlier one
    assert invocation["memory"]["anonymous_gb"] >= before["anonymous_gb"] + 0.25, (before, invocation)


def test_a_timed_out_cell_is_reported_with_its_log(tmp_path):
    flag(tmp_path, "sleep", "model-a__mrpc")
    profile = replace(PROFILE, models=("model-a",), tasks=("mrpc",))  # one job, 6 s: longer than a job's start
    start = time.time()
    with pytest.raises(CellsFailed) as failed:
        run_cells(stub_steps, tmp_path, profile, "local", workers=2, options={"timeout_min": 0.1, "signal_delay_s": 1},
                  poll_seconds=0.2)
    assert time.time() - start < 60
    message = str(failed.value)
    assert message.startswith("1 of 1 cells did not finish:\n- model-a x mrpc: timed out; log: " + str(tmp_path / "jobs"))


def test_an_unknown_executor_lists_the_valid_ones():
    with pytest.raises(SystemExit, match="^unknown executor 'lsf'; executors: inprocess, local, slurm$"):
        pipeline.main(["--profile", "smoke", "--executor", "lsf"])


def test_slurm_without_slurm_names_the_missing_commands_and_the_local_alternative(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit, match=r"^EXECUTOR=slurm needs Slurm's `sbatch`, `srun`, `sacct`, `scancel` "
                                         r"commands, not found on PATH here\. Run from a Slurm login node, or run "
                                         r"the same jobs as local processes with EXECUTOR=local \(`--executor local`\)\.$"):
        pipeline.main(["--profile", "smoke", "--executor", "slurm"])
    (tmp_path / "sbatch").write_text("")
    (tmp_path / "sbatch").chmod(0o755)
    with pytest.raises(ExecutorError, match="needs Slurm's `srun`, `sacct`, `scancel` commands"):
        executor.check_executor("slurm")


def test_slurm_options_come_from_a_yaml_file_and_key_value_pairs(tmp_path):
    config = tmp_path / "slurm.yaml"
    config.write_text("partition: gpu\nmem_gb: 32\nadditional:\n  constraint: a100\n")
    options = slurm_options(config, ["mem_gb=80", "timeout_min=", "account=papa"])
    assert options == {"gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 80, "timeout_min": 2880,
                       "slurm_partition": "gpu", "slurm_account": "papa",
                       "slurm_additional_parameters": {"constraint": "a100"}}
    with pytest.raises(ExecutorError, match=r"^unknown Slurm option 'gpus'; options: partition, account, qos, "
                                            r"constraint, gpus_per_node, cpus_per_task, mem_gb, timeout_min, additional"):
        slurm_options(None, ["gpus=2"])
    with pytest.raises(ExecutorError, match=r"^Slurm options file .*nowhere.yaml does not exist"):
        slurm_options(tmp_path / "nowhere.yaml")
    with pytest.raises(ExecutorError, match=r"^Slurm option 'partition' is not key=value \(e\.g\. partition=gpu\)$"):
        slurm_options(None, ["partition"])
    with pytest.raises(ExecutorError, match=r"^Slurm option timeout_min must be a whole number of minutes, got "
                                            r"'48:00:00'$"):
        slurm_options(None, ["timeout_min=48:00:00"])  # (YAML would read it as 172800, in base 60)
    with pytest.raises(ExecutorError, match=r"^Slurm option additional must be a mapping of sbatch options, got 'a100'$"):
        slurm_options(None, ["additional=a100"])
    assert slurm_options(None, ["account=0123"])["slurm_account"] == "0123"  # a name stays text
    config.write_text("mem_gb: lots\n")
    with pytest.raises(ExecutorError, match=r"^Slurm option mem_gb must be a number of GB, got 'lots'$"):
        slurm_options(config)
    config.write_text("timeout_min: 48:00:00\naccount: 0123\n")  # not base 60, not octal
    with pytest.raises(ExecutorError, match=r"^Slurm option timeout_min must be a whole number of minutes, got "
                                            r"'48:00:00'$"):
        slurm_options(config)
    config.write_text("timeout_min: 90\naccount: 0123\nmem_gb: 7.5\n")
    assert {k: v for k, v in slurm_options(config).items() if k in ("timeout_min", "slurm_account", "mem_gb")} == {
        "timeout_min": 90, "slurm_account": "0123", "mem_gb": 7.5}


def test_cells_run_as_slurm_jobs_with_the_options_given(tmp_path, monkeypatch, capsys):
    """Through a stand-in for Slurm's commands: the sbatch scripts carry the options, each cell is a job, a
    failed job is reported by cell with its log, and a rerun resubmits only it."""
    monkeypatch.setenv("PATH", f"{fake_slurm.install(tmp_path / 'slurm')}{os.pathsep}{os.environ['PATH']}")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    flag(run_dir, "fail", "model-a__mrpc")
    options = slurm_options(None, ["partition=gpu", "gpus_per_node=2", "mem_gb=48", "timeout_min=90"])
    with pytest.raises(CellsFailed) as failed:
        run_cells(stub_steps, run_dir, PROFILE, "slurm", options=options, poll_seconds=0.2)
    message = str(failed.value)
    assert message.startswith("1 of 4 cells did not finish:\n- model-a x mrpc: failed: RuntimeError: simulated "
                              "failure in model-a__mrpc; log: ")
    assert "submitting 4 to slurm\n" in capsys.readouterr().out
    scripts = sorted((tmp_path / "slurm" / "state").glob("*.sh"))
    assert len(scripts) == 4
    text = scripts[0].read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --mem=48GB", "#SBATCH --time=90",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --job-name=papa-cell"):
        assert line in text, text
    assert ran(run_dir) == {"model-a__sst2": 1, "model-b__sst2": 1, "model-b__mrpc": 1}
    (run_dir / "fail" / "model-a__mrpc").unlink()
    assert list(run_cells(stub_steps, run_dir, PROFILE, "slurm", options=options, poll_seconds=0.2)) == ["model-a__mrpc"]
    assert len(list((tmp_path / "slurm" / "state").glob("*.sh"))) == 5
    markers = [Path(run_dir / "cells" / f"{m}__{t}.json") for m in PROFILE.models for t in PROFILE.tasks]
    assert all(p.exists() for p in markers)


def test_local_jobs_on_a_machine_with_gpus_never_share_one(tmp_path, monkeypatch):
    """Three GPUs, two workers, two cells: each job sees one GPU (CUDA_VISIBLE_DEVICES), and the two jobs, which
    run at the same time, never see the same one; which GPU a job submitted later gets (the one the fewest running
    jobs use) is checked on ``_least_used`` below."""
    monkeypatch.setattr(executor, "accelerator_count", lambda: 3)
    (tmp_path / "slow").touch()
    finished = run_cells(stub_steps, tmp_path, replace(PROFILE, models=("model-a",)), "local", workers=2,
                         poll_seconds=0.2)
    seen = {p.name: p.read_text().split()[1] for p in (tmp_path / "ran").glob("*")}
    assert set(seen.values()) <= {"0", "1", "2"} and len(set(seen.values())) == 2
    spans = [(m["started"], m["finished"], seen[name]) for name, m in finished.items()]
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            if a[0] < b[1] and b[0] < a[1]:  # ran at the same time
                assert a[2] != b[2], spans
    four = [0, 1, 2, 3]
    assert executor._least_used([0, 1], four) == 2 and executor._least_used([1], four) == 0
    assert executor._least_used([0, 1, 2, 3, 0], four) == 1 and executor._least_used([3], [3, 5]) == 5


@pytest.mark.parametrize("interrupts", ["handled", "ignored", "terminated", "during a submission"])
def test_ctrl_c_cancels_the_running_jobs(tmp_path, monkeypatch, capsys, interrupts):
    """Ctrl-C while the jobs run; also when this process ignores interrupts (started in the background by a
    non-interactive shell), which its jobs would inherit; a termination (`kill`) instead; and an interrupt that
    arrives while a job is being submitted, which is held until the job is recorded."""
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN if interrupts == "ignored" else signal.default_int_handler)
    try:
        for cell in ("model-a__sst2", "model-a__mrpc"):
            flag(tmp_path, "hold", cell)
        if interrupts == "terminated":
            monkeypatch.setattr(executor, "_pause", lambda s: os.kill(os.getpid(), signal.SIGTERM))
        else:
            monkeypatch.setattr(executor, "_pause", lambda s: (_ for _ in ()).throw(KeyboardInterrupt))
        if interrupts == "during a submission":  # the second submission is interrupted right after its job starts
            make = executor._executor

            def interrupting(*args, **kwargs):
                submitter, submitted = make(*args, **kwargs), []
                submit = submitter.submit

                def submit_then_interrupt(*a, **k):
                    job = submit(*a, **k)
                    submitted.append(job)
                    if len(submitted) == 2:
                        os.kill(os.getpid(), signal.SIGINT)
                    return job
                submitter.submit = submit_then_interrupt
                return submitter
            monkeypatch.setattr(executor, "_executor", interrupting)
        with pytest.raises(KeyboardInterrupt):
            run_cells(stub_steps, tmp_path, PROFILE, "local", workers=2)
        assert "interrupted: cancelled 2 job(s); finished cells are kept" in capsys.readouterr().out
        assert signal.getsignal(signal.SIGINT) == (signal.SIG_IGN if interrupts == "ignored"
                                                   else signal.default_int_handler)
        assert signal.getsignal(signal.SIGTERM) == before[signal.SIGTERM]
        monkeypatch.undo()
        for cell in ("model-a__sst2", "model-a__mrpc"):
            (tmp_path / "hold" / cell).unlink()
        time.sleep(3)  # a job that was not cancelled would finish now
        assert not (tmp_path / "ran").exists() and not list((tmp_path / "cells").glob("*.json"))
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_a_rerun_waits_for_slurm_jobs_still_running_instead_of_submitting_them_again(tmp_path, monkeypatch, capsys):
    """The submitting process dies (killed) while a Slurm job runs; the rerun finds the job queued or running and
    waits for it."""
    import signal
    import subprocess

    monkeypatch.setenv("PATH", f"{fake_slurm.install(tmp_path / 'slurm')}{os.pathsep}{os.environ['PATH']}")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    flag(run_dir, "hold", "model-b__mrpc")
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_executor as t; "
              f"from pathlib import Path; t.run_cells(t.stub_steps, Path({str(run_dir)!r}), t.PROFILE, 'slurm', "
              f"options=t.slurm_options(), poll_seconds=0.2)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):  # until the three other cells are done and the held one was submitted
        if len(list((run_dir / "cells").glob("*.json"))) == 3 and (run_dir / "cells" / "model-b__mrpc.job").exists():
            break
        time.sleep(0.2)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    submitted = len(list((tmp_path / "slurm" / "state").glob("*.sh")))
    assert submitted == 4

    def release(seconds):  # the held job goes on once the rerun is waiting for it
        (run_dir / "hold" / "model-b__mrpc").unlink(missing_ok=True)
        time.sleep(seconds)

    monkeypatch.setattr(executor, "_pause", release)
    finished = run_cells(stub_steps, run_dir, PROFILE, "slurm", options=slurm_options(), poll_seconds=0.2)
    assert "3 of 4 cells done; 1 still queued or running from an earlier submission, waiting for them; submitting 0 " \
           "to slurm" in capsys.readouterr().out
    assert list(finished) == ["model-b__mrpc"]
    assert len(list((tmp_path / "slurm" / "state").glob("*.sh"))) == 4  # nothing submitted again
    assert ran(run_dir)["model-b__mrpc"] == 1


def test_local_jobs_get_gpus_as_the_submitting_process_may_use_them(monkeypatch):
    monkeypatch.setattr(executor, "accelerator_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert executor.visible_gpus() == [2, 3]  # the machine's numbers, not 0 and 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert executor.visible_gpus() == [0, 1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5f2a,GPU-77c1")
    with pytest.raises(ExecutorError, match=r"^CUDA_VISIBLE_DEVICES=GPU-5f2a,GPU-77c1 names GPUs that local jobs "
                                            r"cannot be given \(submitit takes GPU numbers\): list them by number"):
        executor.visible_gpus()


def test_a_cells_job_records_the_most_its_feature_cache_held(tmp_path, monkeypatch):
    """``cell_steps`` measures the feature cache right after the averages saved the baseline's features (the k = 0
    probes then use them up), and run.json's largest counts the cells this invocation ran, not older ones."""
    def averages(run_dir, *args, **kwargs):
        (run_dir / "features").mkdir(exist_ok=True)
        with open(run_dir / "features" / "baseline.pt", "wb") as f:
            f.truncate(256 * 1024 ** 2)  # 0.25 GiB on paper, nothing written

    def sweep(run_dir, *args, **kwargs):
        (run_dir / "features" / "baseline.pt").unlink(missing_ok=True)

    for name, stub in {"average_attention": averages, "probe_sweep": sweep, "head_ranking": lambda *a: {"ranking": []},
                       "compare_rankings": lambda *a: None, "cached_model": lambda name: (None, None),
                       "describe": lambda model: {"layers": 2, "heads": 2}, "model_device": lambda model: "cpu",
                       "precision_of": lambda profile, model: "fp32"}.items():
        monkeypatch.setattr(pipeline, name, stub)
    where = pipeline.cell_steps(tmp_path, PROFILE, "model-a", "sst2")
    assert where["feature_cache_gb"] == 0.25 and not list((tmp_path / "features").iterdir())

    import papermill

    def jobs(steps, run_dir, *args, **kwargs):
        (run_dir / "cells").mkdir()
        for cell, started, cache in (("model-a__sst2", time.time(), 0.25), ("model-b__sst2", 0.0, 9.0)):  # b: older
            pipeline.write_json(run_dir / "cells" / f"{cell}.json", {"started": started, "feature_cache_gb": cache})

    monkeypatch.setattr(pipeline, "check_inputs", lambda profile: None)
    monkeypatch.setattr(pipeline, "run_cells", jobs)
    monkeypatch.setattr(papermill, "execute_notebook", lambda *args, **kwargs: None)
    pipeline.main(["--profile", "smoke", "--run-dir", str(tmp_path / "run"), "--executor", "local",
                   "--notebooks", "04_model_strength"])
    run = pipeline.read_json(tmp_path / "run" / "run.json")
    assert run["invocations"][-1]["feature_cache_gb"] == 0.25 and run["feature_cache_gb"]["largest"] == 0.25
