"""A stand-in for Slurm's sbatch, srun, sacct and scancel on a machine without Slurm: ``install(folder)`` writes the
four commands into folder/bin (put it first on PATH). sbatch runs the submitted script at once in the background
as job N (the Slurm environment variables a job sees are set), srun runs its command with --output/--error
(%j, %t expanded), sacct reports RUNNING / COMPLETED / FAILED / CANCELLED from the job's exit code, scancel kills
it. State lives in folder/state; each job's sbatch script is kept there as <N>.sh."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("sbatch", "srun", "sacct", "scancel")


def install(folder: Path) -> Path:
    bin_dir = Path(folder) / "bin"
    (Path(folder) / "state").mkdir(parents=True, exist_ok=True)
    # job ids unique across installs, as Slurm's are: submitit's watcher remembers the states of ids it has seen
    (Path(folder) / "state" / "first_id").write_text(str(1000 + time.time_ns() // 1000 % 10 ** 9))
    bin_dir.mkdir(parents=True, exist_ok=True)
    for command in COMMANDS:
        path = bin_dir / command
        path.write_text(f"#!/bin/sh\nFAKE_SLURM_DIR={folder}/state exec {sys.executable} {__file__} {command} \"$@\"\n")
        path.chmod(0o755)
    return bin_dir


def _state() -> Path:
    return Path(os.environ["FAKE_SLURM_DIR"])


def sbatch(args):
    script = Path(args[-1])
    ids = sorted(int(p.stem) for p in _state().glob("*.sh"))
    job = str((ids[-1] + 1) if ids else int((_state() / "first_id").read_text()))
    (_state() / f"{job}.sh").write_text(script.read_text())
    env = {**os.environ, "SLURM_JOB_ID": job, "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
           "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "localhost"}
    # run the copy, as Slurm does: submitit renames the file it submitted as soon as sbatch returns
    runner = (f"bash {_state()}/{job}.sh; code=$?; [ -e {_state()}/{job}.cancelled ] || "
              f"if [ $code = 0 ]; then echo COMPLETED > {_state()}/{job}.state; "
              f"else echo FAILED > {_state()}/{job}.state; fi")
    (_state() / f"{job}.state").write_text("RUNNING\n")
    process = subprocess.Popen(["bash", "-c", runner], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (_state() / f"{job}.pid").write_text(str(process.pid))
    print(f"Submitted batch job {job}")


def srun(args):
    files, command, i = {}, [], 0
    while i < len(args):
        if args[i] in ("--output", "--error"):
            files[args[i][2:]] = args[i + 1].replace("%j", os.environ["SLURM_JOB_ID"]).replace("%t", "0")
            i += 2
        elif args[i].startswith("--") and not command:
            i += 1
        else:
            command.append(args[i])
            i += 1
    with open(files["output"], "a") as out, open(files.get("error", files["output"]), "a") as err:
        sys.exit(subprocess.call(command, stdout=out, stderr=err))


def sacct(args):
    jobs = [args[i + 1] for i, a in enumerate(args) if a == "-j"]
    print("JobID|State|NodeList")
    for job in jobs:
        path = _state() / f"{job}.state"
        if path.exists():
            print(f"{job}|{path.read_text().strip()}|localhost")


def scancel(args):
    for job in (a for a in args if a.isdigit()):
        (_state() / f"{job}.cancelled").touch()
        (_state() / f"{job}.state").write_text("CANCELLED\n")
        try:
            os.killpg(int((_state() / f"{job}.pid").read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


if __name__ == "__main__":
    {"sbatch": sbatch, "srun": srun, "sacct": sacct, "scancel": scancel}[sys.argv[1]](sys.argv[2:])
