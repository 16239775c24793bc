"""Check published numbers by computing a slice of them again: ``make verify`` runs the pipeline's notebooks 1-3 for
some models and tasks of a published profile from scratch, in a temporary folder, and compares every probe row
(model, task, predictor, replaced heads, seed, metric) with the published results/<profile>/probe_results.csv.

The tolerance is stated with the verdict: exact (0) where this machine is the kind the run was published from
(the same processor, torch version and precision of each model, as run.json records them); elsewhere
``OTHER_MACHINE_POINTS`` metric points, since the order of floating-point sums differs between CPUs, and bf16
against fp32 or a GPU moves a probe's last digits and can move a metric by a fraction of a point."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

from ..records.runs import ROOT

DEFAULT_MODELS = "minilm-l3,mpnet-base"  # both families here: BERT-style MiniLM, MPNet with relative positions
DEFAULT_TASKS = "cola"  # the cheapest task for MPNet
NOTEBOOKS = "01_average_attention,02_probe_baselines,03_partial_replacement"
KEYS = ["model", "task", "predictor", "replaced_heads", "seed", "metric"]
OTHER_MACHINE_POINTS = 1.0


def compare_rows(published: pd.DataFrame, recomputed: pd.DataFrame, tolerance: float, models, tasks) -> pd.DataFrame:
    """Per row of the slice (`models` x `tasks`) in either table, the recomputed and the published value and their
    difference; `ok` where it is within `tolerance` (metric points). A row only one table holds, or a table holds
    twice, is not ok."""
    slice_ = published[published.model.isin(models) & published.task.isin(tasks)]
    recomputed = recomputed[recomputed.model.isin(models) & recomputed.task.isin(tasks)]
    merged = recomputed[KEYS + ["value"]].merge(slice_[KEYS + ["value"]], on=KEYS, how="outer",
                                                suffixes=("_recomputed", "_published"), indicator=True)
    merged["difference"] = merged["value_recomputed"] - merged["value_published"]
    duplicated = merged.duplicated(KEYS, keep=False)
    both_undefined = merged["value_recomputed"].isna() & merged["value_published"].isna()
    merged["ok"] = (merged["_merge"] == "both") & ~duplicated & ((merged["difference"].abs() <= tolerance)
                                                                 | both_undefined)
    return merged.drop(columns="_merge")


def same_machine_kind(run: dict, here: dict) -> bool:
    """Whether this machine is the kind a published run (its run.json) was computed on: same processor, torch and
    precision per model."""
    published = {m: c.get("choice") for m, c in (run.get("precision_choice") or {}).items()}
    mine = {m: c.get("choice") for m, c in (here.get("precision_choice") or {}).items()}
    processor = lambda r: next(iter((r.get("precision_choice") or {}).values()), {}).get("processor")  # noqa: E731
    return (processor(run) == processor(here) and run["packages"].get("torch") == here["packages"].get("torch")
            and all(published.get(m) == c for m, c in mine.items()))


def changed_settings(published: dict, name: str) -> dict:
    """The settings (a run.json's "profile") in which a published run differs from the profile `name` as the code
    has it now, beside what it can narrow (models, tasks): {setting: (then, now)}."""
    from dataclasses import asdict

    from ..settings.profiles import PROFILES, recorded_settings

    then, now = recorded_settings(published), recorded_settings(asdict(PROFILES[name]))
    return {k: (then[k], v) for k, v in now.items() if then[k] != v}


def report(table: pd.DataFrame, tolerance: float, exact: bool) -> str:
    """The comparison in words and as a table of the rows that differ."""
    bad = table[~table.ok]
    rule = "exact (this machine is the kind the run was published from)" if exact else (
        f"within {tolerance:g} metric points (another kind of machine than the published run's)")
    if not len(table):
        return "verify: no row to compare: the published run has none of this slice, and none was computed"
    lines = [f"verify: {len(table)} rows compared, {len(table) - len(bad)} {rule}; largest difference "
             f"{table['difference'].abs().max():.3g} points"]
    if len(bad):
        lines += ["", bad.to_string(index=False)]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", help="a published profile (results/<profile>/)")
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--keep", help="a folder for the recomputed run instead of a temporary one")
    args = parser.parse_args(argv)
    from . import pipeline

    published_dir = ROOT / "results" / args.profile
    if not (published_dir / "probe_results.csv").exists():
        sys.exit(f"results/{args.profile}/ holds no published run to verify; published: "
                 f"{', '.join(p.parent.name for p in sorted((ROOT / 'results').glob('*/probe_results.csv')))}")
    changed = changed_settings(json.loads((published_dir / "run.json").read_text())["profile"], args.profile)
    if changed:
        sys.exit(f"results/{args.profile}/ was made with other settings than the {args.profile} profile has now ("
                 + "; ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in changed.items())
                 + "): computing it again here would not be the same computation. Publish a run made with the current "
                   f"settings (make figures PROFILE={args.profile}, then make publish) and verify that.")
    with tempfile.TemporaryDirectory(prefix="papa-verify-") as scratch:
        run_dir = Path(args.keep or Path(scratch) / "run")
        pipeline.main(["--profile", args.profile, "--models", args.models, "--tasks", args.tasks,
                       "--run-dir", str(run_dir), "--notebooks", NOTEBOOKS])
        recomputed = pd.read_csv(run_dir / "results" / "probe_results.csv")
        here = json.loads((run_dir / "run.json").read_text())
    run = json.loads((published_dir / "run.json").read_text())
    exact = same_machine_kind(run, here)
    tolerance = 0.0 if exact else OTHER_MACHINE_POINTS
    table = compare_rows(pd.read_csv(published_dir / "probe_results.csv"), recomputed, tolerance,
                         args.models.split(","), args.tasks.split(","))
    print(report(table, tolerance, exact))
    return 0 if len(table) and table.ok.all() else 1


if __name__ == "__main__":
    sys.exit(main())
