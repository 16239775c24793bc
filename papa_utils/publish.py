"""Publishing a finished run as the repository's results: an explicit step, never a side effect of a run.

    python -m papa_utils.publish runs/cpu          # what `make publish RUN_DIR=runs/cpu` does
    python -m papa_utils.publish --readme cpu      # only regenerate the README block from results/cpu/

A run writes its tables, claims and figures inside its own folder (``<run>/results``, ``<run>/figures``).
Publishing copies them to ``results/<profile>/`` and ``figures/<profile>/`` (tracked), with the run's executed
notebooks (``results/<profile>/notebooks/``, outputs and figures included) and an index page that links every
published notebook, table and figure (``results/<profile>/README.md``), and regenerates the README's block for that profile (between ``<!-- results:<profile>:start -->`` and ``<!-- results:<profile>:end -->``)
from those files. It refuses a run that did not finish, and a run whose scope does not cover the scope of
what is published now (a narrowed run never replaces the results of a wider one).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import pandas as pd

from .analysis import (curve_drops_markdown, curve_markdown, curve_summary, half_heads_markdown,
                       ranking_markdown, ranking_verdict, read_statistics, table1, table1_markdown)
from .choices import SWEEP_FRACTIONS
from .profiles import PROFILES, Profile, recorded_settings
from .runs import (RECOMPUTED, ROOT, RunScopeError, atomic_path, covers, describe_scope, invocations_of, repo_relative,
                   run_totals, write_json)
from .verdicts import FLAT_TAIL, claim_statements, findings, probe_strength, probe_strength_sentence

RESULT_FILES = ("probe_results.csv", "convergence.csv", "table1.md", "table1.tex", "claims.json")
# only from profiles that ask for them (learning curves, the ranking comparison, stability), or from runs made
# since they exist (per-example statistics: without them the CIs resample seeds only, and the README says so);
# a table the run left without rows is not published
OPTIONAL_FILES = ("learning_curves.csv", "ranking_comparison.csv", "ranking_agreement.csv", "half_heads_by_ranking.csv",
                  "ranking_stability.csv", "dev_statistics.npz", "truncation.csv")


def _filled(path: Path) -> bool:
    """A result file worth publishing: it exists and, for a table, holds at least one row."""
    if not path.exists():
        return False
    return path.suffix != ".csv" or len(path.read_text().strip().splitlines()) > 1


class PublishError(RuntimeError):
    """A run folder that cannot be published (unfinished, or missing its results)."""


def _finished_run(run_dir: Path) -> dict:
    record = run_dir / "run.json"
    if not record.exists():
        raise PublishError(f"{run_dir} has no run.json: it is not a run folder made by `make figures`")
    run = json.loads(record.read_text())
    if "scope" not in run or "wall_seconds" not in run:
        raise PublishError(f"the run in {run_dir} did not finish (its run.json has no wall time); run `make figures` "
                           f"with the same arguments again to finish it (finished steps are skipped), then publish")
    missing = [name for name in RESULT_FILES if not (run_dir / "results" / name).exists()]
    if missing:
        raise PublishError(f"the run in {run_dir} has no {', '.join(missing)} under results/; it is incomplete")
    return run


def publish_run(run_dir: str | Path, root: Path = ROOT) -> Path:
    """Copy a finished run's results and figures to <root>/results/<profile>/ and <root>/figures/<profile>/
    (each folder replaced atomically), record the run with paths relative to the repository, and regenerate
    the README block of that profile when the README has one. Returns the published results folder."""
    run_dir = Path(run_dir)
    run = _finished_run(run_dir)
    name = run["scope"]["profile"]
    target = root / "results" / name
    if (target / "run.json").exists():
        published = json.loads((target / "run.json").read_text())["scope"]
        if not covers(run["scope"], published) and not _replaces_an_older_definition(run, published):
            raise RunScopeError(
                f"results/{name}/ holds a run over {describe_scope(published)}; the run in {run_dir} covers only "
                f"{describe_scope(run['scope'])}, so publishing it would replace those results with fewer. "
                f"Publish a run that covers at least as much (make figures PROFILE={name} without MODELS/TASKS).")
    with atomic_path(target, folder=True) as tmp:
        for file in RESULT_FILES + tuple(f for f in OPTIONAL_FILES if _filled(run_dir / "results" / f)):
            shutil.copy2(run_dir / "results" / file, tmp / file)
        write_json(tmp / "run.json", run)
        (tmp / "notebooks").mkdir()
        for notebook in sorted(run_dir.glob("*.ipynb")):
            (tmp / "notebooks" / notebook.name).write_text(published_notebook(notebook, run_dir, name))
        figures = sorted((run_dir / "figures").glob("*"))
        (tmp / "README.md").write_text(index_page(name, tmp, [f.name for f in figures]))
    with atomic_path(root / "figures" / name, folder=True) as tmp:
        for figure in figures:
            shutil.copy2(figure, tmp / figure.name)
    write_readme_block(name, root)
    return target


def republish_notebooks(run_dir: str | Path, root: Path = ROOT) -> Path:
    """Put the notebooks a run folder executed, and the result files and figures they made, in place of those of
    the published run of the same profile, keeping the published notebooks and files this run did not make. For a
    published run whose later notebooks cannot be executed again here (their steps are not at hand): the run must
    have the published run's settings, so that its steps are the same computation. The published run.json keeps the
    run that made every notebook and adds this run's last invocation to its list (its wall time to the run's), and
    the README block lists it."""
    run_dir = Path(run_dir)
    run = _finished_run(run_dir)
    name = run["scope"]["profile"]
    target = root / "results" / name
    if not (target / "run.json").exists():
        raise PublishError(f"results/{name}/ holds no published run to execute notebooks of again: publish a whole "
                           f"run with `make publish RUN_DIR={run_dir}`")
    published = json.loads((target / "run.json").read_text())
    if recorded_settings(run["profile"]) != recorded_settings(published["profile"]) or not covers(run["scope"], published["scope"]):
        raise PublishError(f"the run in {run_dir} is not the published {name} run's computation (other settings, or "
                           f"fewer models, tasks or seeds): publish it whole with `make publish RUN_DIR={run_dir}`")
    latest = invocations_of(run)[-1]  # the invocation that executed the notebooks again
    # only what this invocation wrote: a file or figure older than its start came from an earlier one
    started = datetime.strptime(latest["started"], "%Y-%m-%dT%H:%M:%S%z").timestamp() - 60
    fresh = lambda path: path.exists() and path.stat().st_mtime >= started  # noqa: E731
    invocations = invocations_of(published) + [latest]
    published = {**published, "invocations": invocations, **run_totals(invocations)}
    with atomic_path(target, folder=True) as tmp:
        shutil.copytree(target, tmp, dirs_exist_ok=True)
        for file in RESULT_FILES + OPTIONAL_FILES:
            if _filled(run_dir / "results" / file) and fresh(run_dir / "results" / file):
                shutil.copy2(run_dir / "results" / file, tmp / file)
        write_json(tmp / "run.json", published)
        for notebook in latest["notebooks"]:
            path = run_dir / f"{notebook}.ipynb"
            (tmp / "notebooks" / path.name).write_text(published_notebook(path, run_dir, name))
    figures = root / "figures" / name
    with atomic_path(figures, folder=True) as tmp:
        if figures.exists():
            shutil.copytree(figures, tmp, dirs_exist_ok=True)
        for figure in sorted((run_dir / "figures").glob("*")):
            if fresh(figure):
                shutil.copy2(figure, tmp / figure.name)
    (target / "README.md").write_text(index_page(name, target, sorted(p.name for p in figures.glob("*"))))
    write_readme_block(name, root)
    return target


def _invocation_lines(run: dict) -> list[str]:
    """The run's wall time and memory over its invocations, and, when there were several, what each did."""
    invocations = invocations_of(run)
    if len(invocations) == 1:
        i = invocations[0]
        return [f"- **Wall time {_minutes(run['wall_seconds'])}** in one invocation at commit "
                f"`{i['git_commit'][:7]}`{_tree(i)}; peak resident memory "
                f"{run['peak_memory_gb']:.1f} GiB (the largest process). By notebook: "
                + ", ".join(f"{nb[:2]} {_minutes(t)}" for nb, t in i["notebook_seconds"].items()) + "."]
    recorded = [i for i in invocations if i.get("wall_seconds") is not None]
    over = (f"its {len(invocations)} invocations" if len(recorded) == len(invocations) else
            f"the {len(recorded)} of its {len(invocations)} invocations that recorded it")
    partial = "" if run.get("walls_recorded", True) else " (a lower bound: not every invocation's wall is known in full)"
    peaks = [i for i in invocations if i.get("peak_memory_gb") is not None]
    lines = [f"- **Wall time {_minutes(run['wall_seconds'])}**, summed over {over}{partial}; peak resident memory "
             f"{run['peak_memory_gb']:.1f} GiB (the largest process of "
             + ("any of them" if len(peaks) == len(invocations) else "those that recorded it") + ")."]
    k = 0
    while k < len(invocations):  # invocations that recorded nothing but their commit, one line for a run of them
        unrecorded = 0
        while k + unrecorded < len(invocations) and invocations[k + unrecorded].get("wall_seconds") is None:
            unrecorded += 1
        if unrecorded > 1:
            group = invocations[k:k + unrecorded]
            lines.append(f"  {k + 1}-{k + unrecorded}. Commits " + ", ".join(f"`{str(i['git_commit'])[:7]}`" for i in group)
                         + ", notebooks " + ", ".join(dict.fromkeys(n[:2] for i in group for n in i.get("notebooks") or []))
                         + ": wall times and steps not recorded.")
            k += unrecorded
        else:
            lines.append(f"  {k + 1}. {_invocation_line(invocations[k])}")
            k += 1
    return lines


def _tree(i: dict) -> str:
    """The state of an invocation's tree beside its commit ("" when clean)."""
    if i.get("dirty") is None:
        return " (whether the tree had uncommitted changes was not recorded)"
    return f" with uncommitted changes (diff sha256 `{i['diff_sha256'][:12]}`)" if i["dirty"] else ""


def _invocation_line(i: dict) -> str:
    """One invocation of a run, in words: commit, notebooks, wall, memory, steps computed and found done."""
    state = _tree(i)
    notebooks = i.get("notebooks") or []
    steps = i.get("steps")
    done = ("its steps were not recorded" if not steps else
            f"computed {steps['computed']} steps"
            + "".join(f" ({n} again: {RECOMPUTED[why]})" for why, n in steps["recomputed"].items())
            + (f" and found {steps['reused']} done" if steps.get("reused") is not None else ""))
    wall = "wall time not recorded" if i.get("wall_seconds") is None else _minutes(i["wall_seconds"])
    peak = "" if i.get("peak_memory_gb") is None else f", peak {i['peak_memory_gb']:.1f} GiB"
    return (f"Commit `{str(i['git_commit'])[:7]}`{state}, notebook{'s' * (len(notebooks) != 1)} "
            f"{', '.join(n[:2] for n in notebooks) or 'none'}: {wall}{peak}; {done}"
            + ("" if i.get("finished", True) else "; interrupted (its wall time runs to its last finished notebook)")
            + ".")


def published_notebook(path: Path, run_dir: Path, name: str) -> str:
    """An executed notebook as published: every output kept (figures embedded as PNG), and the paths of the machine
    that ran it (papermill's input and output paths, the run folder given as a parameter and printed, files of the
    checkout in a warning) written relative to the repository, in text only (never inside image data)."""
    notebook = json.loads(path.read_text())
    papermill = notebook.get("metadata", {}).get("papermill", {})
    checkouts = {ROOT}  # the checkout that ran it (from papermill's input path), as well as this one
    if Path(papermill.get("input_path") or "").is_absolute():
        checkouts.add(Path(papermill["input_path"]).parent.parent)
    if papermill:
        papermill["input_path"] = f"notebooks/{path.name}"
        papermill["output_path"] = f"results/{name}/notebooks/{path.name}"
        if "run_dir" in papermill.get("parameters", {}):
            papermill["parameters"]["run_dir"] = repo_relative(run_dir)
    # a path starts where no path character precedes it: not inside a longer path, nor a relative one
    run = re.compile(rf"(?<![\w./~-]){re.escape(str(Path(run_dir).resolve()))}(?![\w-])")
    local = [re.compile(rf"(?<![\w./~-]){re.escape(str(c))}/") for c in checkouts]

    def relative(text):
        if isinstance(text, list):
            return [relative(t) for t in text]
        text = run.sub(lambda _: repo_relative(run_dir), text)
        for pattern in local:
            text = pattern.sub("", text)
        return text

    for cell in notebook.get("cells", []):
        cell["source"] = relative(cell.get("source", ""))
        for output in cell.get("outputs", []):
            for field in ("text", "traceback", "evalue"):
                if field in output:
                    output[field] = relative(output[field])
            for kind in [k for k in output.get("data", {}) if k.startswith("text/")]:
                output["data"][kind] = relative(output["data"][kind])
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


# notebooks that compute nothing unless the profile asks (the profile field, and what a profile without it does)
NOTEBOOK_ASKS = {"05_probe_strength": ("curve_models", "runs no learning curve"),
                 "06_gate_free_ranking": ("compare_rankings", "compares no ranking with its own")}
NOTEBOOK_TITLES = {
    "00_anatomy_of_attention": "Anatomy of attention: checks, head statistics and interventions on one model",
    "01_average_attention": "The constant (average) matrices of every model and task",
    "02_probe_baselines": "Probing baseline, full PAPA and their references",
    "03_partial_replacement": "Replacing some of the heads: the sweep",
    "04_model_strength": "Table 1 and the paper's claims",
    "05_probe_strength": "Learning curves: the loss against the probe's training size",
    "06_gate_free_ranking": "Head rankings compared with the gates",
}
TABLE_TITLES = {
    "probe_results.csv": "every probe result (tidy: model, task, replaced heads, seed, predictor, metric)",
    "convergence.csv": "whether each probe's dev curve ended flat",
    "table1.md": "Table 1 (Markdown)", "table1.tex": "Table 1 (LaTeX)",
    "claims.json": "the claims' estimates, intervals and verdicts",
    "learning_curves.csv": "learning-curve results", "ranking_comparison.csv": "the sweep under each head ranking",
    "ranking_agreement.csv": "each ranking's agreement with the gates, and its cost",
    "half_heads_by_ranking.csv": "claim 2 with the half of the heads each ranking picks",
    "ranking_stability.csv": "each ranking against itself on other data or seeds",
    "dev_statistics.npz": "per-example dev counts, for the paired bootstraps",
    "truncation.csv": "the share of inputs the layout cuts, per L", "run.json": "how the run was made",
}
FIGURE_TITLES = {  # by file-name prefix
    "one_input": "one input's attention in the PAPA layout (notebook 0)",
    "head_statistics": "head statistics: entropy, distance, input dependence (notebook 0)",
    "average_vs_input": "a head's average next to one input's attention (notebook 0)",
    "input_dependence": "input dependence of every head (notebook 0)",
    "average_attention": "constant matrices of a few heads next to one input (notebook 1)",
    "dev_curves": "probe dev curves per epoch (notebook 2)",
    "performance_vs_dynamic_heads": "the metric against the number of input-dependent heads (notebook 3)",
    "relative_drop_vs_baseline": "relative drop against baseline strength: claim 3 (notebook 4)",
    "learning_curves": "learning curves (notebook 5)", "ranking_comparison": "the sweep under each ranking (notebook 6)",
}


def index_page(name: str, folder: Path, figures: list[str]) -> str:
    """results/<name>/README.md: the published run's notebooks, tables and figures, each linked with what it is
    (a hosting site shows this page when the folder is opened)."""
    lines = [f"# Published `{name}` run", "",
             "Generated by `make publish` from the files this page links; the repository's README reads the numbers.",
             "", "## Numbers", "", readme_block(name, folder=folder).rstrip(), "", "## Executed notebooks", ""]
    profile = json.loads((folder / "run.json").read_text())["profile"]
    for notebook in sorted((folder / "notebooks").glob("*.ipynb")):
        asks = NOTEBOOK_ASKS.get(notebook.stem)
        if asks and not profile.get(asks[0]):
            elsewhere = [p.parent.name for p in sorted(folder.parent.glob("*/run.json"))
                         if json.loads(p.read_text())["profile"].get(asks[0])
                         and (p.parent / "notebooks" / notebook.name).exists()]
            see = "; ".join(f"[the `{o}` run's copy](../{o}/notebooks/{notebook.name})" for o in elsewhere)
            lines.append(f"- {notebook.stem}: {NOTEBOOK_TITLES.get(notebook.stem, '')}: the `{name}` profile "
                         f"{asks[1]}, so [its copy](notebooks/{notebook.name}) is empty" + (f"; see {see}" if see else ""))
            continue
        lines.append(f"- [{notebook.stem}](notebooks/{notebook.name}): {NOTEBOOK_TITLES.get(notebook.stem, '')}")
    lines += ["", "## Tables", ""]
    for file in sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "README.md"):
        lines.append(f"- [{file}]({file}): {TABLE_TITLES.get(file, '')}")
    lines += ["", "## Figures", ""]
    for png in (f for f in figures if f.endswith(".png")):
        stem = png[:-4]
        title = next((t for prefix, t in FIGURE_TITLES.items() if stem.startswith(prefix)), "")
        pdf = f" ([PDF](../../figures/{name}/{stem}.pdf))" if f"{stem}.pdf" in figures else ""
        lines += [f"### {stem}", "", f"{title}{pdf}", "", f"![{stem}](../../figures/{name}/{png})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _replaces_an_older_definition(run: dict, published: dict) -> bool:
    """A run of the profile exactly as it is defined now (every setting, its own head ranking and passes included)
    that covers every model, task and seed of the published run may replace a run made when the profile ranked heads
    another way or ran other backbone passes."""
    own = PROFILES.get(run["scope"]["profile"])
    return own is not None and recorded_settings(run["profile"]) == recorded_settings(asdict(own)) and covers(
        run["scope"], {**published, "ranking": own.ranking, "passes": own.passes})


# steps that not every run has, in the order the README names them
STEP_LABELS = (("head_scores", "head scores (input dependence, variance; with their stability subsets)"),
               ("ranking_comparison", "sweeps under the compared rankings"), ("learning_curve", "learning curve"))


def _batch_note(profile: Profile) -> str:
    """Where a profile's probe batch differs from the paper's, where the evidence for it is."""
    return "" if profile.probe_batch_size == 16 else (
        " (the paper's batch is 16; the larger one is a choice for speed, compared with batch 16 on the same "
        "features in docs/speed.md)")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _command(name: str, run: dict) -> str:
    """The commands that made a published run (with what narrowed it, and its executor)."""
    p, scope = run["profile"], run["scope"]
    grid = PROFILES[name] if name in PROFILES else Profile(**p)  # the profile's whole grid, to tell a narrowed run
    full = {"models": grid.models, "tasks": grid.tasks}
    narrowed = "".join(f" {part.upper()}={','.join(scope[part])}" for part in ("models", "tasks")
                       if set(scope[part]) != set(full[part]))
    executor = run.get("executor", "inprocess")
    narrowed += f" EXECUTOR={executor}" if executor != "inprocess" else ""
    return f"`make figures PROFILE={name}{narrowed}` then `make publish RUN_DIR={run['run_dir']}`"


def _run_lines(name: str, run: dict) -> list[str]:
    """How a published run was made: the commands, commit and packages, wall and step times, memory."""
    steps = run["step_seconds"]
    command = _command(name, run)
    lines = [f"Produced by {command}, "
             f"with `PAPA_DATA_DIR={run['data_dir']}`, on {run['cpus']} CPU cores (torch {run['packages']['torch']}, "
             f"transformers {run['packages']['transformers']}).", "",
             *_invocation_lines(run),
             *([_cells_line(run)] if run.get("cells") else []),
             f"- Summed over the grid: averages (the same pass also saves the baseline's training features) "
             f"{_minutes(steps['averages'])}, "
             + (f"head ranking (gates) {_minutes(steps['ranking'])}, " if steps["ranking"] else "")
             + f"other backbone feature "
             f"passes {_minutes(steps['feature_passes'])}, probe training (the paper's probe and the attention-free "
             f"one) {_minutes(steps['probe_training'])}"
             + "".join(f", {label} {_minutes(steps[key])}" for key, label in STEP_LABELS if steps.get(key)) + ".",
             f"- Baseline features saved on disk: {run['feature_cache_gb']['largest']:.1f} GiB at most, "
             f"{run['feature_cache_gb']['at_the_end']:.1f} GiB left at the end."]
    return lines


def readme_block(name: str, root: Path = ROOT, folder: Path | None = None) -> str:
    """The README's results block for results/<name>/ (or the published files in `folder`), generated from its
    run.json, probe_results.csv and claims (``claim_statements``, the same sentences notebook 4 prints)."""
    folder = folder or root / "results" / name
    run = json.loads((folder / "run.json").read_text())
    results = pd.read_csv(folder / "probe_results.csv")
    statistics = read_statistics(folder)
    p, scope = run["profile"], run["scope"]
    sized = Profile(**p)
    lines = _run_lines(name, run) + [
             "",
             f"One protocol for every model: per task the same training and dev examples (random subsets with a "
             f"fixed seed) and the same L, listed above Table 1; the constant matrices average "
             f"{_size_cell(sized, scope['models'][0], 'average_examples', scope['tasks'])} training examples; heads "
             f"ranked by {_ranking_label(sized)} on {_size_cell(sized, scope['models'][0], 'rank_examples', scope['tasks'])}; "
             f"probe {sized.epochs} epochs at lr {sized.probe_lr:g}, batch {sized.probe_batch_size} "
             f"({sized.lr_schedule} schedule){_batch_note(sized)}; seeds "
             f"{', '.join(map(str, sized.seeds))}; shares of the heads replaced "
             f"{', '.join(_share(f) for f in sized.sweep_fractions)}"
             + ("" if tuple(sized.sweep_fractions) == tuple(SWEEP_FRACTIONS) else
                f" (the paper's: {', '.join(_share(f) for f in SWEEP_FRACTIONS)})") + f"; {_precision(run)}."]
    if p.get("curve_models") and p.get("curve_tasks"):
        lines += ["", f"Learning curves (notebook 5): {', '.join(p['curve_models'])} on {', '.join(p['curve_tasks'])}, training sizes "
                      f"{', '.join(map(str, p['curve_sizes']))} (the whole split where smaller), seeds "
                      f"{', '.join(map(str, p['curve_seeds']))}, the dev sets above."]
    claims = json.loads((folder / "claims.json").read_text())
    said = claim_statements(claims)
    resampled = ("seeds and dev examples (paired bootstrap)" if statistics else
                 "seeds only: this run kept no per-example dev statistics, so the noise of the dev set is not in them")
    lines += ["", "### Table 1: probing baseline vs. all heads constant (mean ± std over seeds, points)", "",
              f"95% CIs on the relative drop and the learned-signal share resample {resampled}.", "",
              table1_markdown(table1(results, statistics)).rstrip()]
    convergence = _table(folder / "convergence.csv")
    if convergence is not None and len(convergence):
        lines += ["", convergence_line(convergence)]
    lines += ["", "### The paper's claims, with a verdict each", "",
              "| claim (Hassid et al. 2022) | paper | here |", "|---|---|---|",
              f"| 1. all heads constant | average relative drop 8% | {said['all_heads']} |",
              f"| 2. half of the heads constant | little or no drop, sometimes a gain | {said['half_heads']} |",
              f"| 3. better models lose more | the drop grows with the baseline | {said['strength']} |"]
    curve = _table(folder / "learning_curves.csv")
    if curve is not None and len(curve):
        lines += ["", "### How the verdict moves with the probe's training data (learning curve, notebook 5)", "",
                  curve_markdown(curve_summary(curve)).rstrip()]
    comparison = _table(folder / "ranking_comparison.csv")
    if comparison is not None and len(comparison):
        agreement = pd.read_csv(folder / "ranking_agreement.csv")
        partial = ", ".join(_share(f) for f in p.get("sweep_fractions", SWEEP_FRACTIONS) if 0 < f < 1)
        lines += ["", "### Can a cheap statistic replace the gates? (notebook 6)", "",
                  f"Partial sweep (k = {partial} of the heads) under each ranking on "
                  f"{', '.join(p['compare_models'])}: deterministic rankings with seeds "
                  f"{', '.join(map(str, p['seeds']))}, {p['random_orders']} random orders with one seed each. A ranking is "
                  f"as good as the gates at a point when its mean is at least the gates' worst seed. Agreement and cost "
                  f"for every model × task of the run.", "",
                  ranking_markdown(ranking_verdict(comparison), agreement).rstrip()]
        lines += _half_heads_lines(folder)
    stability = _table(folder / "ranking_stability.csv")
    if stability is not None and len(stability):
        if "ranking" not in stability:  # made before other rankings than the gates had a stability
            stability.insert(0, "ranking", "gates")
        lines += ["", "### How stable the head ranking is (notebook 6)", "",
                  "Spearman correlation between a ranking and the same ranking made again (another seed; a disjoint "
                  "training subset of the same size); mean over tasks (min to max). A score has no seed.",
                  "", "| ranking | model | another seed | a disjoint training subset |", "|---|---|---|---|"]
        for (ranking, model), part in stability.groupby(["ranking", "model"], sort=False):
            cells = [part[part.compared_with == c].spearman for c in ("another seed", "disjoint subset")]
            lines.append(f"| {ranking} | {model} | " + " | ".join(
                f"{v.mean():+.2f} ({v.min():+.2f} to {v.max():+.2f})" if len(v) else "—" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def convergence_line(convergence: pd.DataFrame) -> str:
    """How many probe curves ended flat (``tables.convergence_table``) and which did not, with their tail slopes."""
    if "tail_slope" not in convergence:  # a run made before the slope was kept: its last epoch's gain only
        return (f"Convergence (`convergence.csv`): this run kept only each curve's last-epoch gain, which a decaying "
                f"learning rate makes small whether or not the curve has converged; no check is reported.")
    moving = convergence[~convergence.converged.astype(bool)]
    return (f"Convergence (`convergence.csv`): {len(convergence) - len(moving)} of {len(convergence)} probe curves "
            f"(model × task × configuration, mean over seeds) ended flat: the slope of their last epochs' dev metric, "
            f"against the training done counted in epochs at the peak learning rate, is under {FLAT_TAIL:g} points "
            f"per epoch or within twice its standard error over seeds" + ("." if not len(moving) else "; still moving (points per epoch at the peak rate): " + ", ".join(
                f"{r.model} {r.task} {r.predictor} k={r.replaced_heads} ({r.tail_slope:+.1f})"
                for r in moving.itertuples()) + "."))


HALF_HEADS_INTRO = ("**Claim 2 with the half of the heads each ranking picks** (`half_heads_by_ranking.csv`): the average "
                    "relative drop at k = ½ with its 95% CI (the ranking's seeds and the dev examples, resampled paired "
                    "with the baseline on those seeds: a random order has one seed, so its interval has no seed noise), "
                    "over the cells that carry signal, and its verdict; the paper picks with the gates.")


def summary_block(name: str, root: Path = ROOT) -> str:
    """A short README block for a published run whose whole page is results/<name>/README.md: how it was made, the
    learning curve in short (``analysis.curve_drops_markdown``) and claim 2 under each ranking
    (``analysis.half_heads_markdown``), from the published files."""
    folder = root / "results" / name
    run = json.loads((folder / "run.json").read_text())
    p, steps = run["profile"], run["step_seconds"]
    command = _command(name, run)
    lines = [f"Produced by {command} ({run['cpus']} CPU cores); steps summed "
             f"{_minutes(sum(steps.values()))} ("
             + ", ".join(f"{key.replace('_', ' ')} {_minutes(v)}" for key, v in steps.items() if v) + ").", "",
             *_invocation_lines(run)]
    curve = _table(folder / "learning_curves.csv")
    if curve is not None and len(curve):
        left_out = json.loads((folder / "claims.json").read_text()).get("left_out", {})
        lines += ["", f"**Learning curves** ({', '.join(p['curve_models'])} on {', '.join(p['curve_tasks'])}; seeds "
                      f"{', '.join(map(str, p['curve_seeds']))}, no interval): PAPA's relative drop with every head "
                      f"constant, by the probe's training size.", "",
                  curve_drops_markdown(curve_summary(curve), left_out).rstrip(), "",
                  probe_strength_sentence(probe_strength(curve_summary(curve), left_out), p["curve_seeds"])]
    return "\n".join(lines + _half_heads_lines(folder)) + "\n"


def _half_heads_lines(folder: Path) -> list[str]:
    """Claim 2 under each ranking (``analysis.half_heads_markdown``), when the run compared rankings."""
    by_ranking = _table(folder / "half_heads_by_ranking.csv")
    if by_ranking is None or not len(by_ranking):
        return []
    return ["", HALF_HEADS_INTRO, "", half_heads_markdown(by_ranking).rstrip()]


def _cells_line(run: dict) -> str:
    """How the cells' jobs ran (``executor.run_cells``), from run.json."""
    cells = run["cells"].values()
    seconds = [c["seconds"] or 0 for c in cells]
    hosts = sorted({c["host"] for c in cells if c.get("host")})
    devices = sorted({c["device"] for c in cells if c.get("device")})
    waited = invocations_of(run)[-1].get("cells_wall_seconds")
    return (f"- **Cells as jobs** (`EXECUTOR={run['executor']}`): {len(seconds)} cells, {_minutes(sum(seconds))} of "
            f"job time in all, the longest {_minutes(max(seconds))}, on {', '.join(hosts)} ({', '.join(devices)})"
            + (f"; this run waited {_minutes(waited)} for the cells it submitted, before the notebooks"
               if waited is not None else "") + ".")


def _share(fraction: float) -> str:
    return {0: "0", 1: "all", 0.5: "½", 0.875: "⅞", 0.9375: "15/16"}.get(round(fraction, 4), f"{fraction:g}")


def _precision(run: dict) -> str:
    """Which precision the backbone passes and the probe's products ran in: with "auto", each model's choice and
    the product timings behind it (``device.auto_precision``, recorded in run.json)."""
    chosen = run.get("precision_choice")
    if not chosen:
        return f"backbone in {run['profile']['precision']}"
    parts = [f"{m} {c['choice']} (bf16 products {c['bf16_seconds'] / c['fp32_seconds']:.2f}x the fp32 time)"
             for m, c in chosen.items()]
    return f"precision auto on {next(iter(chosen.values()))['processor']}: {', '.join(parts)}"


def _ranking_label(profile: Profile) -> str:
    if profile.ranking != "gates":
        return profile.ranking.replace("_", " ")
    return f"gates, {profile.rank_epochs} epoch{'s' if profile.rank_epochs > 1 else ''} at lr {profile.gate_lr or profile.probe_lr:g}"


def _size_cell(profile: Profile, model: str, name: str, tasks) -> str:
    """A size of one model: its usual value, and the tasks where it differs ("whole split" for None)."""
    show = lambda n: "whole split" if n is None else str(n)  # noqa: E731
    usual = profile.size(model, name)
    other = [f"{t} {show(profile.size(model, name, t))}" for t in tasks if profile.size(model, name, t) != usual]
    return show(usual) + (f" ({', '.join(other)})" if other else "")


def _table(path: Path):
    """A result table, or None when this run has none (a run made before that table existed, or a profile without
    that step, e.g. the paper's without a learning curve: an empty file)."""
    try:
        return pd.read_csv(path) if path.exists() else None
    except pd.errors.EmptyDataError:
        return None


def findings_block(name: str, root: Path = ROOT) -> str:
    """The README's "What it says" and "Caveats" paragraphs for results/<name>/ (``verdicts.findings``), generated
    from its claims.json and convergence.csv, with the command that regenerates them."""
    folder = root / "results" / name
    text = findings(json.loads((folder / "claims.json").read_text()), _table(folder / "convergence.csv"))
    return (text.rstrip("\n") + f" Generated from `results/{name}/claims.json` by `make publish` (`.venv/bin/python -m "
                   f"papa_utils.publish --readme {name}` regenerates it); the rules behind each verdict: "
                   f"[docs/method.md](docs/method.md#verdicts).\n")


BLOCKS = {"results": readme_block, "summary": summary_block, "findings": findings_block}  # README markers:
# <!-- <kind>:<profile>:start --> ... <!-- <kind>:<profile>:end -->


def write_readme_block(name: str, root: Path = ROOT) -> bool:
    """Replace the README's blocks for results/<name>/: the whole results (``readme_block``, marker
    ``results:<name>``) or their summary (``summary_block``, marker ``summary:<name>``), and what they say
    (``findings_block``, marker ``findings:<name>``); False when the README has none of them."""
    readme = root / "README.md"
    text = readme.read_text() if readme.exists() else ""
    found = False
    for kind, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {kind}:{re.escape(name)}:start -->\n).*?(<!-- {kind}:{re.escape(name)}:end -->)",
                             re.S)
        if pattern.search(text):
            block, found = make(name, root), True
            text = pattern.sub(lambda m: m.group(1) + block + m.group(2), text)
    if not found:
        return False
    with atomic_path(readme) as tmp:
        tmp.write_text(text)
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", nargs="?", help="a finished run folder, e.g. runs/cpu")
    parser.add_argument("--readme", metavar="PROFILE", help="only regenerate the README block and the published run's "
                                                            "page from results/PROFILE/")
    parser.add_argument("--notebooks-only", action="store_true",
                        help="put the notebooks this run executed (and what they made) in place of the published "
                             "run's, keeping the others (republish_notebooks)")
    args = parser.parse_args(argv)
    if args.readme:
        folder = ROOT / "results" / args.readme
        if (folder / "run.json").exists():  # the published run's own page carries the same numbers
            (folder / "README.md").write_text(index_page(args.readme, folder, sorted(
                p.name for p in (ROOT / "figures" / args.readme).glob("*"))))
        if not write_readme_block(args.readme):
            sys.exit(f"README.md has no <!-- results:{args.readme}:start --> or <!-- summary:{args.readme}:start --> "
                     f"... end block to regenerate")
        return
    if not args.run_dir:
        parser.error("give a run folder to publish (e.g. runs/cpu) or --readme PROFILE")
    try:
        target = (republish_notebooks if args.notebooks_only else publish_run)(args.run_dir)
    except (PublishError, RunScopeError) as e:
        sys.exit(str(e))
    print(f"published {args.run_dir} to {target.relative_to(ROOT)}/ and figures/{target.name}/")


if __name__ == "__main__":
    main()
