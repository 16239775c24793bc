"""How the package is built: modules import only lower ones, and the committed notebooks are their sources."""
import ast
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "papa_utils"
# the subpackages, lowest first: a subpackage imports only itself and the ones listed before it
SUBPACKAGES = ["settings", "records", "core", "reports", "teaching", "runner"]
# every module, lowest first within its subpackage: a module imports only modules listed before it
LAYERS = ["settings.choices", "settings.tasks", "settings.profiles",
          "records.runs", "records.memory",
          "core.device", "core.models", "core.layout", "core.packing", "core.metrics", "core.references",
          "core.averages", "core.hooks", "core.replace", "core.head_scores", "core.features", "core.probe",
          "core.backbones",
          "reports.statistics", "reports.verdicts", "reports.rendering", "reports.readability", "reports.figures",
          "reports.tables", "reports.pages", "reports.publish",
          "teaching.interventions", "teaching.head_stats", "teaching.plots", "teaching.exercises", "teaching.lesson",
          "teaching.solutions",
          "runner.steps", "runner.sweeps", "runner.cost", "runner.executor", "runner.pipeline", "runner.verify"]
# what the modules below import, directly or through other modules: plain data, no torch (publishing a run reads
# its files only)
WITHOUT_TORCH = ["settings.choices", "settings.tasks", "settings.profiles", "records.runs", "records.memory",
                 "reports.statistics",
                 "reports.verdicts", "reports.rendering", "reports.pages", "reports.publish"]


def package_modules() -> set[str]:
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.glob("*/*.py")
            if p.stem != "__init__"}


def imported(path: Path) -> list[ast.ImportFrom | ast.Import]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.ImportFrom, ast.Import))]


def imported_package_modules(path: Path) -> set[str]:
    """papa_utils modules ("subpackage.module") imported anywhere in a module of the package, or in a file outside
    it by absolute name, inside functions too."""
    here = path.relative_to(PACKAGE).parent.parts if path.is_relative_to(PACKAGE) else ()
    found = set()
    for node in imported(path):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:len(here) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("papa_utils."):
                parts = node.module.split(".")[1:]
            else:
                continue
            if len(parts) >= 2:
                found.add(".".join(parts[:2]))
            else:
                found.update(f"{parts[0]}.{alias.name}" for alias in node.names)
        else:
            found.update(".".join(a.name.split(".")[1:3]) for a in node.names if a.name.startswith("papa_utils."))
    return found


def test_every_module_has_a_layer():
    assert package_modules() == set(LAYERS)
    assert sorted({m.split(".")[0] for m in LAYERS}) == sorted(SUBPACKAGES)
    assert [p.name for p in PACKAGE.glob("*.py")] == ["__init__.py"]  # every module lives in a subpackage


@pytest.mark.parametrize("module", LAYERS)
def test_modules_import_only_lower_layers(module):
    higher = set(LAYERS[LAYERS.index(module) + 1:])  # (a module run as __main__ may import itself by name)
    assert imported_package_modules(PACKAGE.joinpath(*module.split(".")).with_suffix(".py")) & higher == set()


@pytest.mark.parametrize("module", LAYERS)
def test_subpackages_import_only_lower_subpackages(module):
    """The subpackages are layers too: a module imports nothing from a subpackage above its own."""
    own = SUBPACKAGES.index(module.split(".")[0])
    reached = {m.split(".")[0] for m in imported_package_modules(PACKAGE.joinpath(*module.split(".")).with_suffix(".py"))}
    assert {s for s in reached if SUBPACKAGES.index(s) > own} == set()


@pytest.mark.parametrize("module", LAYERS)
def test_no_module_is_over_500_lines(module):
    assert len(PACKAGE.joinpath(*module.split(".")).with_suffix(".py").read_text().splitlines()) <= 500


@pytest.mark.parametrize("module", LAYERS)
def test_no_module_imports_another_modules_private_names(module):
    path = PACKAGE.joinpath(*module.split(".")).with_suffix(".py")
    private = [f"{node.module}.{a.name}" for node in imported(path) if isinstance(node, ast.ImportFrom)
               for a in node.names if a.name.startswith("_")]
    assert private == []


@pytest.mark.parametrize("source", sorted((ROOT / "notebooks" / "src").glob("*.py")), ids=lambda p: p.stem)
def test_committed_notebooks_are_paired_with_their_sources(source):
    """Each template and its source in jupytext's percent format hold the same cells both ways (the template read
    from the source, the source written from the template), papermill's parameters cell tagged, and no output:
    `jupytext --sync notebooks/src/*.py` after editing either."""
    import jupytext

    committed = nbformat.read(ROOT / "notebooks" / f"{source.stem}.ipynb", as_version=4)
    cells = lambda nb: [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]  # noqa: E731
    assert cells(jupytext.read(source)) == cells(committed), f"jupytext --sync {source.relative_to(ROOT)}"
    assert jupytext.writes(committed, fmt="py:percent") == source.read_text(), f"jupytext --sync {source.name}"
    assert committed.metadata["jupytext"]["formats"] == "ipynb,src//py:percent"
    assert [c.metadata.get("tags") for c in committed.cells].count(["parameters"]) == 1
    assert not any(cell.get("outputs") for cell in committed.cells)


@pytest.mark.parametrize("module", WITHOUT_TORCH)
def test_profiles_and_publishing_load_without_torch(module):
    """Checked in a fresh interpreter: importing the module loads neither torch nor transformers."""
    import subprocess

    code = (f"import sys, papa_utils.{module}; loaded = sorted({{'torch', 'transformers'}} & set(sys.modules)); "
            f"print(','.join(loaded))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


# modules the steps import that cannot change a step's numbers: why each is left out of the code digest
NOT_NUMERICAL = {"records.runs": "writes files and keys; never computes a number",
                 "settings.profiles": "settings, each in the key of the steps it changes",
                 "settings.choices": "names and shares of heads, each in the keys of the steps it changes"}


def test_the_code_digest_covers_every_module_the_steps_compute_with():
    """A step records the digest of ``runs.NUMERICAL_CODE``: every module the steps import, directly or through
    others, is in it or stated here as unable to change their numbers (a module added to the steps' path must be
    placed), and nothing the steps never import is in it."""
    from papa_utils.records.runs import NUMERICAL_CODE

    reached, todo = set(), ["runner.steps", "runner.sweeps"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += imported_package_modules(PACKAGE.joinpath(*module.split(".")).with_suffix(".py"))
    assert reached - set(NOT_NUMERICAL) == set(NUMERICAL_CODE)
