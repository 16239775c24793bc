"""The notebooks' code checked in-process, without a kernel: every name a notebook imports from papa_utils exists,
every name it uses is defined, and the teaching notebook's setup runs (and refuses unknown names at once) as its
cells would. nbval executes every notebook in the slow tier (`make test-all`)."""
import ast
import builtins
import importlib
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TEACHING = ROOT / "notebooks" / "00_anatomy_of_attention.ipynb"


def code_cells(path: Path) -> list:
    """The code cells of a notebook, with their tags."""
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def source(cell) -> str:
    """A cell's code with IPython's magics and shell lines left out."""
    return "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))


def package_imports(tree: ast.AST) -> list[tuple[str, str]]:
    """(module, name) for every `from papa_utils[.module] import name` in a syntax tree."""
    return [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module and node.module.split(".")[0] == "papa_utils" for alias in node.names]


def undefined_names(code: str) -> set[str]:
    """Names a notebook's code reads that nothing in it defines (assignment, import, def, class, loop or
    comprehension target, function argument) and that are not builtins: what a renamed or removed helper leaves."""
    tree = ast.parse(code)
    defined, read = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    return read - defined


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_name_a_notebook_imports_from_the_package_exists(path):
    code = "\n".join(source(c) for c in code_cells(path))
    imports = package_imports(ast.parse(code))
    assert imports, f"{path.name} imports nothing from papa_utils"
    missing = [f"{module}.{name}" for module, name in imports
               if not hasattr(importlib.import_module(module), name)]
    assert missing == [], f"{path.name} imports names papa_utils does not have"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_name_a_notebook_uses_is_defined_in_it(path):
    code = "\n".join(source(c) for c in code_cells(path))
    assert undefined_names(code) == set()


def test_the_name_checks_catch_a_renamed_helper():
    """The two checks above on a notebook whose helper was renamed in the package: both fail."""
    code = "from papa_utils.teaching.head_stats import js_divergence_renamed\nscore = js_divergence(1, 2)\n"
    [(module, name)] = package_imports(ast.parse(code))
    assert not hasattr(importlib.import_module(module), name)
    assert undefined_names(code) == {"js_divergence"}


def teaching_setup(**parameters) -> dict:
    """Notebook 0's parameters cell with `parameters` injected (as papermill injects them), then its setup cell,
    run in one namespace in this process; returns that namespace."""
    cells = code_cells(TEACHING)
    [index] = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    namespace = {}
    exec(compile(source(cells[index]), "parameters", "exec"), namespace)
    namespace.update(parameters)
    exec(compile(source(cells[index + 1]), "setup", "exec"), namespace)
    return namespace


def test_the_teaching_notebooks_setup_runs_in_process(data_dir, tmp_path):
    found = teaching_setup(run_dir=str(tmp_path))
    assert found["model_name"] == "minilm-l3" and found["task"] == "mrpc" and found["length"] == 32
    assert len(found["corpus"]) == found["examples"] == 64
    assert found["info"]["layers"] == 3 and found["info"]["heads"] == 12
    assert found["figures"] == tmp_path / "figures"


@pytest.mark.parametrize("parameters,message", [
    ({"model": "minilm-l4"}, "not an offline model name (minilm-l3, minilm-l6, mpnet-base)"),
    ({"task": "sst3"}, "unknown task 'sst3'; known tasks: cola, sst2, mrpc"),
])
def test_the_teaching_notebook_refuses_unknown_names_at_once(data_dir, tmp_path, parameters, message):
    with pytest.raises(Exception) as failure:
        teaching_setup(run_dir=str(tmp_path), **parameters)
    assert message in str(failure.value)
    assert not (tmp_path / "figures").exists()  # it failed before computing anything


def test_a_run_executes_every_notebook_in_order_with_the_runs_parameters(tmp_path, monkeypatch):
    """`make figures` (``run_notebooks`` without a subset) executes all seven committed notebooks, in order, into
    the run folder, each with the run's parameters; run.json lists them. (papermill is stubbed: the order and
    the parameters are what is checked here; the notebooks themselves run in the smoke run and under nbval.)"""
    from papa_utils.runner import pipeline
    from papa_utils.settings import profiles

    calls = []
    monkeypatch.setattr("papermill.execute_notebook", lambda source, out, parameters, **k: calls.append(
        (Path(source).stem, Path(out).parent, parameters)))
    profile = profiles.get_profile("smoke", passes="padded")
    run_dir = pipeline.run_notebooks(profile, tmp_path / "run")
    assert pipeline.NOTEBOOKS == [p.stem for p in NOTEBOOKS]  # every committed notebook, in file order
    assert [name for name, _, _ in calls] == pipeline.NOTEBOOKS
    assert {folder for _, folder, _ in calls} == {run_dir}
    assert all(p == {"profile": "smoke", "models": "minilm-l3", "tasks": "sst2,mrpc,ner", "ranking": "gates",
                     "passes": "padded", "run_dir": str(run_dir)} for _, _, p in calls)
    assert json.loads((run_dir / "run.json").read_text())["notebooks"] == pipeline.NOTEBOOKS


@pytest.mark.parametrize("name,kind", [("05_probe_strength", "learning curve"),
                                       ("06_gate_free_ranking", "ranking comparison")])
def test_a_notebook_with_nothing_to_compute_says_why_and_shows_nothing_else(name, kind, data_dir, tmp_path, capfd,
                                                                             caplog, recwarn):
    """Notebooks 5 and 6 under a profile that asks for neither (`cpu`), run cell by cell as a kernel would (the
    value of a cell's last expression shown): one line, the reason, and no table, figure, data note or warning."""
    from papa_utils.settings.profiles import get_profile, why_absent

    namespace, shown = {}, []
    for cell in code_cells(ROOT / "notebooks" / f"{name}.ipynb"):
        tree = ast.parse(source(cell))
        if "parameters" in cell.metadata.get("tags", []):
            exec(compile(tree, name, "exec"), namespace)
            namespace.update(profile="cpu", run_dir=str(tmp_path / "run"))
            continue
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, name, "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), name, "eval"), namespace)
            shown += [] if value is None else [value]
    printed = capfd.readouterr()
    assert printed.out == why_absent(get_profile("cpu"), kind) + "\n"
    assert shown == [] and printed.err == "" and [r.getMessage() for r in caplog.records] == []
    assert [str(w.message) for w in recwarn] == []
