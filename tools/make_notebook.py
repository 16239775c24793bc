"""Write a notebook from a plain-text cell list (used to author notebooks/; outputs are never stored).

Cells are separated by lines '# %% [markdown]', '# %%' or '# %% parameters' (a code cell tagged parameters).
Usage: python tools/make_notebook.py notebooks/src/01_average_attention.py notebooks/01_average_attention.ipynb
"""
import sys

import nbformat


def build(source: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    kind, lines = None, []

    def flush():
        text = "\n".join(lines).strip("\n")
        if kind is None or not text:
            return
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            cell = nbformat.v4.new_code_cell(text)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)

    for line in source.splitlines():
        if line.startswith("# %%"):
            flush()
            rest = line[4:].strip()
            kind = "markdown" if rest == "[markdown]" else "parameters" if rest == "parameters" else "code"
            lines = []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        else:
            lines.append(line)
    flush()
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


if __name__ == "__main__":
    nbformat.write(build(open(sys.argv[1]).read()), sys.argv[2])
