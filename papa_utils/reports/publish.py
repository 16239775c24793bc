"""Publishing a finished run as the repository's results: an explicit step, never a side effect of a run.

    python -m papa_utils.reports.publish runs/cpu          # what `make publish RUN_DIR=runs/cpu` does
    python -m papa_utils.reports.publish --readme cpu      # only regenerate the README block from results/cpu/

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
from datetime import datetime
from pathlib import Path


from ..settings.profiles import recorded_settings
from ..records.runs import (ROOT, RunScopeError, atomic_path, covers, describe_scope, invocations_of, repo_relative,
                            run_totals, write_json)
from .pages import BLOCKS, index_page, replaces_an_older_definition

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
    (each folder replaced atomically), record the run with paths relative to the repository and with the numerical
    code that computed its steps ("step_code", ``tables.step_codes``), and regenerate the README block of that
    profile when the README has one. Returns the published results folder."""
    from .tables import step_codes  # reads the run folder's steps (torch); regenerating the README needs none

    run_dir = Path(run_dir)
    run = _finished_run(run_dir)
    name = run["scope"]["profile"]
    target = root / "results" / name
    if (target / "run.json").exists():
        published = json.loads((target / "run.json").read_text())["scope"]
        if not covers(run["scope"], published) and not replaces_an_older_definition(run, published):
            raise RunScopeError(
                f"results/{name}/ holds a run over {describe_scope(published)}; the run in {run_dir} covers only "
                f"{describe_scope(run['scope'])}, so publishing it would replace those results with fewer. "
                f"Publish a run that covers at least as much (make figures PROFILE={name} without MODELS/TASKS).")
    with atomic_path(target, folder=True) as tmp:
        for file in RESULT_FILES + tuple(f for f in OPTIONAL_FILES if _filled(run_dir / "results" / f)):
            shutil.copy2(run_dir / "results" / file, tmp / file)
        write_json(tmp / "run.json", {**run, "step_code": step_codes(run_dir)})
        (tmp / "notebooks").mkdir()
        for notebook in sorted(run_dir.glob("*.ipynb")):
            (tmp / "notebooks" / notebook.name).write_text(published_notebook(notebook, run_dir, name))
        figures = sorted((run_dir / "figures").glob("*.png"))  # the PDFs stay in the run folder
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
    run that made every notebook and adds this run's last invocation to its list (its wall time to the run's), with
    the code of the steps in this run folder, which the notebooks read ("step_code"), and the README block lists it."""
    from .tables import step_codes  # reads the run folder's steps (torch); regenerating the README needs none

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
    published = {**published, "invocations": invocations, **run_totals(invocations), "step_code": step_codes(run_dir)}
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
        for figure in sorted((run_dir / "figures").glob("*.png")):
            if fresh(figure):
                shutil.copy2(figure, tmp / figure.name)
    (target / "README.md").write_text(index_page(name, target, sorted(p.name for p in figures.glob("*"))))
    write_readme_block(name, root)
    return target


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
