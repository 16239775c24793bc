"""How the package is built: modules import only lower ones, and the committed notebooks are their sources."""
import ast
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
# lowest first: a module may import only modules listed before it (device and precision policy near the bottom)
LAYERS = ["choices", "tasks", "profiles", "runs", "device", "models", "layout", "packing", "metrics", "references",
          "averages", "replace", "interventions", "head_stats", "exercises", "lesson", "solutions", "probe", "analysis", "verdicts", "figures", "backbones", "steps", "sweeps", "tables",
          "cost", "executor", "pipeline", "publish", "verify"]
# what the modules below import, directly or through other modules: plain data, no torch (publishing a run reads
# its files only)
WITHOUT_TORCH = ["choices", "tasks", "profiles", "runs", "analysis", "verdicts", "publish"]


def imported_package_modules(path: Path) -> set[str]:
    """papa_utils modules imported anywhere in a file, inside functions too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("papa_utils."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("papa_utils."))
    return found


def test_every_module_has_a_layer():
    modules = {p.stem for p in (ROOT / "papa_utils").glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


@pytest.mark.parametrize("module", LAYERS)
def test_modules_import_only_lower_layers(module):
    higher = set(LAYERS[LAYERS.index(module) + 1:])  # (a module run as __main__ may import itself by name)
    assert imported_package_modules(ROOT / "papa_utils" / f"{module}.py") & higher == set()


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
NOT_NUMERICAL = {"runs": "writes files and keys; never computes a number",
                 "profiles": "settings, each in the key of the steps it changes",
                 "choices": "names and shares of heads, each in the keys of the steps it changes"}


def test_the_code_digest_covers_every_module_the_steps_compute_with():
    """A step records the digest of ``runs.NUMERICAL_CODE``: every module the steps import, directly or through
    others, is in it or stated here as unable to change their numbers (a module added to the steps' path must be
    placed), and nothing the steps never import is in it."""
    from papa_utils.runs import NUMERICAL_CODE

    reached, todo = set(), ["steps", "sweeps"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += imported_package_modules(ROOT / "papa_utils" / f"{module}.py")
    assert reached - set(NOT_NUMERICAL) == set(NUMERICAL_CODE)
