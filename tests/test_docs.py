"""The repository as a reader meets it: a short README with docs behind it, every published figure and table
linked, published notebooks with their outputs, documented names that import as written, and no history standing
in for an explanation."""
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PUBLISHED = sorted(p.parent for p in (ROOT / "results").glob("*/run.json"))
GENERATED_BLOCK = re.compile(r"<!-- (results|summary|findings):[\w-]+:start -->.*?<!-- \1:[\w-]+:end -->", re.S)
# a commit hash in backticks, or an issue / pull request number
HISTORY = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b|\b[Ii]ssues? #?\d+|\bPR #?\d+|"
                     r"(?<![\w&])#\d+\b")


def readable(path: Path) -> str:
    """A page's text without the blocks `make publish` generates (a run's provenance names its commit)."""
    return GENERATED_BLOCK.sub("", path.read_text())


def links(path: Path) -> set[Path]:
    """Every local file a Markdown page links to (links and images), resolved."""
    found = set()
    for target in re.findall(r"\]\(([^)\s#]+)", path.read_text()):
        if not re.match(r"[a-z]+://", target):
            found.add((path.parent / target).resolve())
    return found


def test_the_readme_is_short_and_starts_with_the_quick_run():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    commands = [line.split("#")[0].strip() for line in text.split("```bash", 1)[1].split("```", 1)[0].splitlines()
                if line.strip()]
    assert commands[0] == "make figures PROFILE=smoke"
    for heading in ("## Quick start", "## Tests", "## Teaching", "## Results", "## Notebooks", "## Profiles",
                    "## Documentation"):
        assert heading in text, heading


def committed(path: Path) -> bool:
    """A file or folder a clone of the repository has: tracked by git (where this is a git checkout), so that a
    file this machine keeps but git ignores does not pass for one."""
    import subprocess

    try:
        listed = subprocess.run(["git", "ls-files", "--", str(path)], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: what is on disk
        return path.exists()
    return bool(listed.strip())


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS, *sorted(
    ROOT.glob("results/*/README.md"))], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_local_link_resolves(page):
    missing = sorted(str(p.relative_to(ROOT)) for p in links(page) if not committed(p))
    assert missing == []


@pytest.mark.parametrize("folder", PUBLISHED, ids=lambda p: p.name)
def test_every_published_figure_has_a_caption(folder):
    page = (folder / "README.md").read_text().split("## Figures", 1)[1]
    uncaptioned = re.findall(r"### (\S+)\s*(?=!\[)", page)  # nothing but blank lines between heading and image
    assert page.count("### ") >= len(list((ROOT / "figures" / folder.name).glob("*.png"))) and uncaptioned == []


def test_every_doc_is_linked_from_the_readme():
    assert set(DOCS) <= links(ROOT / "README.md")


@pytest.mark.parametrize("folder", PUBLISHED, ids=lambda p: p.name)
def test_every_published_figure_table_and_notebook_is_linked(folder):
    pages = [ROOT / "README.md", *DOCS, *sorted(ROOT.glob("results/*/README.md"))]
    linked = set().union(*(links(page) for page in pages))
    published = [p for p in (ROOT / "figures" / folder.name).glob("*")] + [p for p in folder.rglob("*") if p.is_file()
                                                                          and p.name != "README.md"]
    assert sorted(str(p.relative_to(ROOT)) for p in published if p.resolve() not in linked) == []


@pytest.mark.parametrize("folder", PUBLISHED, ids=lambda p: p.name)
def test_published_notebooks_carry_their_outputs(folder):
    notebooks = sorted((folder / "notebooks").glob("*.ipynb"))
    assert [p.stem for p in notebooks] == sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    images = 0
    for path in notebooks:
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert any(c["outputs"] for c in cells), path.name
        images += sum("image/png" in o.get("data", {}) for c in cells for o in c["outputs"])
        assert re.findall(r"(?<![\w.~-])/(?:work|home|Users|root|scratch|mnt|tmp|data)/", path.read_text()) == [], path.name
    assert images >= len(list((ROOT / "figures" / folder.name).glob("*.png")))
    assert sum(p.stat().st_size for p in notebooks) < 10 * 2 ** 20


def documented_names() -> set[str]:
    names = set()
    for page in [ROOT / "README.md", *DOCS]:
        names |= set(re.findall(r"`(papa_utils(?:\.[A-Za-z_][A-Za-z0-9_]*)+)", page.read_text()))
    return names


@pytest.mark.parametrize("name", sorted(documented_names()))
def test_every_documented_name_imports_as_written(name):
    parts = name.split(".")
    for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            assert hasattr(value, attribute), f"{name}: {'.'.join(parts[:split])} has no {attribute}"
            value = getattr(value, attribute)
        return
    pytest.fail(f"{name} does not import")


def comments_and_docstrings(path: Path) -> str:
    text = path.read_text()
    if path.suffix == ".py":
        return "\n".join(re.findall(r"#.*", text)) + "\n".join(re.findall(r'"""(.*?)"""', text, re.S))
    return readable(path)


@pytest.mark.parametrize("path", [ROOT / "README.md", *DOCS, *sorted((ROOT / "notebooks" / "src").glob("*.py")),
                                  *sorted((ROOT / "papa_utils").rglob("*.py"))], ids=lambda p: p.name)
def test_no_history_stands_in_for_an_explanation(path):
    """Issue numbers and commit hashes belong in the changelog and the commit messages."""
    assert HISTORY.findall(comments_and_docstrings(path)) == []


SUBPACKAGE_OF = {p.stem: p.parent.name for p in (ROOT / "papa_utils").glob("*/*.py") if p.stem != "__init__"}


def short_references() -> set[tuple[str, str, str]]:
    """`module.name` references to a papa_utils module in the package's docstrings and comments and in the docs
    (file, module, name)."""
    found = set()
    for path in [*sorted((ROOT / "papa_utils").rglob("*.py")), *sorted((ROOT / "notebooks" / "src").glob("*.py")),
                 ROOT / "README.md", *DOCS]:
        text = comments_and_docstrings(path) if path.suffix == ".py" else path.read_text()
        for module, name in re.findall(r"`+([a-z_]+)\.([A-Za-z_][A-Za-z0-9_]*)`+", text):
            if module in SUBPACKAGE_OF:
                found.add((path.name, module, name))
    return found


@pytest.mark.parametrize("where,module,name", sorted(short_references()))
def test_every_short_reference_names_a_member_of_its_module(where, module, name):
    assert hasattr(importlib.import_module(f"papa_utils.{SUBPACKAGE_OF[module]}.{module}"), name), f"{where}: {module}.{name}"


def executing_commits(folder: Path) -> dict[str, str | None]:
    """For each published notebook, the commit of the last invocation of its run that executed it (run.json)."""
    from papa_utils.records.runs import invocations_of

    found = {}
    for invocation in invocations_of(json.loads((folder / "run.json").read_text())):
        for notebook in invocation.get("notebooks") or []:
            found[notebook] = invocation.get("git_commit")
    return found


def template_at(commit: str, name: str) -> Path | None:
    """The notebook template `name` as it was at `commit` (None when this clone does not hold that commit)."""
    import subprocess
    import tempfile

    shown = subprocess.run(["git", "show", f"{commit}:notebooks/{name}.ipynb"], cwd=ROOT, capture_output=True)
    if shown.returncode:
        return None
    path = Path(tempfile.mkdtemp()) / f"{name}.ipynb"
    path.write_bytes(shown.stdout)
    return path


@pytest.mark.parametrize("folder", PUBLISHED, ids=lambda p: p.name)
def test_published_notebooks_run_the_code_of_the_notebooks_here(folder):
    """The published copies are executions of the notebooks (papermill adds one cell with the run's parameters):
    of the notebooks as they are in this repository, or, for a notebook changed since, as they were at the commit
    whose invocation executed it (run.json; the page of the run lists its invocations). A cell counts as the same
    code when it imports the same names from the package, whichever of its modules holds them now, and the rest is
    equal."""
    def code(path):
        cells = json.loads(path.read_text())["cells"]
        return [package_imports_apart("".join(c["source"])) for c in cells if c["cell_type"] == "code"
                and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]

    commits, unknown = executing_commits(folder), []
    for path in sorted((folder / "notebooks").glob("*.ipynb")):
        if code(path) == code(ROOT / "notebooks" / path.name):
            continue
        commit = commits.get(path.stem)
        assert commit, f"{path.name}: not the notebook here, and run.json names no commit that executed it"
        then = template_at(commit, path.stem)
        if then is None:
            unknown.append(f"{path.name} ({commit[:12]})")
            continue
        assert code(path) == code(then), f"{path.name}: neither the notebook here nor the one at {commit[:12]}"
    if unknown:
        pytest.skip(f"executed at commits this clone does not hold (a shallow clone): {', '.join(unknown)}")


def package_imports_apart(source: str) -> tuple[str, frozenset]:
    """A cell's code without its imports from papa_utils, and the names those imports bring in."""
    import ast

    lines, names = source.splitlines(), set()
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a cell of notebook magics
        return source, frozenset()
    for node in reversed(tree.body):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "papa_utils":
            names |= {(a.name, a.asname) for a in node.names}
            del lines[node.lineno - 1:node.end_lineno]
    return "\n".join(lines), frozenset(names)


def test_an_empty_notebook_of_a_published_run_points_to_a_run_that_has_it(tmp_path):
    """The `cpu` profile runs no learning curve and compares no ranking: its index page says so and links the
    copies of the run that does, instead of sending readers to an empty notebook."""
    import shutil

    from papa_utils.reports.pages import index_page

    for name in ("cpu", "cpu-robustness"):
        shutil.copytree(ROOT / "results" / name, tmp_path / name)
    lines = index_page("cpu", tmp_path / "cpu", []).splitlines()
    assert ("- 05_probe_strength: Learning curves: the loss against the probe's training size: the `cpu` profile runs "
            "no learning curve, so [its copy](notebooks/05_probe_strength.ipynb) only says why; see [the `cpu-robustness` "
            "run's copy](../cpu-robustness/notebooks/05_probe_strength.ipynb)") in lines
    assert any(line.startswith("- 06_gate_free_ranking: ") and "compares no ranking" in line for line in lines)
    assert "- [04_model_strength](notebooks/04_model_strength.ipynb): Table 1 and the paper's claims" in lines
    robustness = index_page("cpu-robustness", tmp_path / "cpu-robustness", []).splitlines()
    assert any(line.startswith("- [05_probe_strength](notebooks/05_probe_strength.ipynb)") for line in robustness)


def test_the_readme_says_what_the_published_claims_say():
    """The README's "What it says" paragraphs are the ones `make publish` generates from the committed claims.json
    (``pages.findings_block``): a hand edit, or claims that moved without publishing, fails here."""
    from papa_utils.reports.pages import findings_block

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- findings:([\w-]+):start -->\n(.*?)<!-- findings:\1:end -->", text, re.S)
    assert blocks and all(block == findings_block(name) for name, block in blocks)


def test_every_generated_block_of_the_readme_is_what_publishing_makes_now():
    """Every README block between markers (results, summary, findings) and every published run's own page are what
    `make publish` generates from the committed files with this code: a hand edit, or a generator changed without
    regenerating (`python -m papa_utils.reports.publish --readme PROFILE`), fails here."""
    from papa_utils.reports.pages import BLOCKS, index_page

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- (\w+):([\w-]+):start -->\n(.*?)<!-- \1:\2:end -->", text, re.S)
    assert {kind for kind, _, _ in blocks} == set(BLOCKS)
    for kind, name, block in blocks:
        assert block == BLOCKS[kind](name), f"{kind}:{name}"
    for folder in PUBLISHED:
        figures = sorted(p.name for p in (ROOT / "figures" / folder.name).glob("*"))
        page = index_page(folder.name, folder, figures)
        assert (folder / "README.md").read_text() == page, folder.name
