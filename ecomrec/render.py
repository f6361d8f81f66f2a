"""Render executed notebooks to HTML pages that read cleanly offline.

`python -m ecomrec.render NOTEBOOK.ipynb [...]` writes `NOTEBOOK.html` beside each notebook (what the
Makefile runs after papermill). Two things make the page work without the network:
- MathJax comes from a copy placed beside the pages (`<report>/mathjax/`, from the PyPI package
  `jupyter-server-mathjax`, MathJax 2.7's static files), loaded through a relative URL, so the report
  folder stays relocatable; formulas are typeset as SVG, which needs no web fonts.
- The template (`ecomrec/templates/ecomrec`, the lab template minus require.js from a CDN) references no
  remote script.
`stderr_outputs` lists the cells whose output carries stderr text (a pink warning box on the page); the
smoke tests assert that no chapter has one it did not ask for (a cell tagged `stderr`).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

from ecomrec.storage import atomic_path, write_text_atomic

MATHJAX_PACKAGE = "jupyter_server_mathjax"
MATHJAX_DIR = "mathjax"  # beside the pages
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js"
TEMPLATES = Path(__file__).with_name("templates")
TEMPLATE = "ecomrec"
STDERR_TAG = "stderr"  # a cell whose stderr output the lesson shows on purpose


def mathjax_source() -> Path:
    """MathJax 2.7's static folder inside the installed `jupyter-server-mathjax` (found without importing it:
    its package imports jupyter_server, which this project does not install)."""
    spec = importlib.util.find_spec(MATHJAX_PACKAGE)
    static = Path(next(iter(spec.submodule_search_locations))) / "static" if spec and spec.submodule_search_locations else None
    if static is None or not (static / "MathJax.js").is_file():
        raise FileNotFoundError(
            "MathJax's static files were not found: install them with "
            "`pip install --no-deps jupyter-server-mathjax==0.2.6` (`make env` does)")
    return static


def install_mathjax(report_dir: str | Path) -> Path:
    """Copy MathJax into `<report_dir>/mathjax` unless a complete copy is there; return that folder."""
    dest = Path(report_dir) / MATHJAX_DIR
    if (dest / "MathJax.js").is_file():
        return dest
    with atomic_path(dest) as tmp:  # a page never sees a half-copied MathJax
        shutil.copytree(mathjax_source(), tmp)
    return dest


def render_html(notebook: str | Path, out: str | Path | None = None) -> Path:
    """Render an executed notebook to HTML with the offline template; MathJax is placed beside the page."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    notebook = Path(notebook)
    out = Path(out) if out is not None else notebook.with_suffix(".html")
    install_mathjax(out.parent)
    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(TEMPLATES)], mathjax_url=MATHJAX_URL)
    # a text progress bar redraws its line with '\r': keep only each line's last state, as a notebook shows it
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(), enabled=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    return write_text_atomic(out, body)


def stderr_outputs(notebook: str | Path) -> list[tuple[int, str]]:
    """(cell index, first 300 characters) of every stderr stream output in cells not tagged `stderr`."""
    import nbformat

    found = []
    for index, cell in enumerate(nbformat.read(Path(notebook), as_version=4).cells):
        if STDERR_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                found.append((index, "".join(output.get("text", ""))[:300]))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="executed .ipynb files; each page is written beside its notebook")
    args = parser.parse_args(argv)
    for notebook in args.notebooks:
        print(f"wrote {render_html(notebook)}")


if __name__ == "__main__":
    main()
