"""The rendered report reads offline: local MathJax, no CDN scripts, formulas typeset, no stray stderr boxes."""

import re

import nbformat
import pytest

from browser import math_problems, rendered_dom
from ecomrec import render

FORMULA = r"$\mathrm{NDCG@10} = \frac{1}{\mathrm{IDCG}}\sum_{i \le 10} \frac{g_i}{\log_2(i+1)}$"
DISPLAY = r"$$\mathrm{RRF}(d) = \sum_{r} \frac{1}{k + \mathrm{rank}_r(d)}$$"


def small_notebook(path, outputs=(), tags=()):
    """An executed-looking notebook: one markdown cell with formulas, one code cell with `outputs`."""
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print('ok')", outputs=list(outputs))
    code.metadata["tags"] = list(tags)
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Metrics\n\nInline {FORMULA}, and displayed:\n\n{DISPLAY}\n"), code]
    nbformat.write(nb, path)
    return path


def stream(name, text):
    return nbformat.v4.new_output("stream", name=name, text=text)


def test_page_loads_mathjax_from_beside_it_and_nothing_remote(tmp_path):
    page = render.render_html(small_notebook(tmp_path / "nb.ipynb", [stream("stdout", "ok\n")]))
    text = page.read_text()
    sources = re.findall(r'<(?:script|link|img)[^>]*(?:src|href)="([^"]+)"', text)
    assert sources and not [s for s in sources if re.match(r"(https?:)?//", s)], sources
    assert not re.search(r"import\(\s*[\"']https?://", text)  # no ES-module loads from a CDN (mermaid)
    mathjax = [s for s in sources if "MathJax.js" in s]
    assert mathjax == [f"{render.MATHJAX_URL}?config=TeX-AMS-MML_HTMLorMML-full,Safe"]
    assert (tmp_path / render.MATHJAX_URL).is_file()  # relative: the folder can move anywhere


def test_formulas_render_in_a_browser_without_network(tmp_path):
    page = render.render_html(small_notebook(tmp_path / "nb.ipynb"))
    assert math_problems(rendered_dom(page)) == []


def test_math_check_fails_on_a_page_that_loads_mathjax_from_a_cdn(tmp_path):
    page = render.render_html(small_notebook(tmp_path / "nb.ipynb"))
    page.write_text(page.read_text().replace(render.MATHJAX_URL, "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js"))
    problems = math_problems(rendered_dom(page))
    assert problems and "formulas left as source text" in problems[0]


def test_progress_bar_redraws_keep_only_their_last_state(tmp_path):
    bar = "encode:   0%|   | 0/4\rencode:  50%|#  | 2/4\rencode: 100%|###| 4/4\n"
    page = render.render_html(small_notebook(tmp_path / "nb.ipynb", [stream("stdout", bar)]))
    assert "encode: 100%" in page.read_text() and "encode:  50%" not in page.read_text()


def test_stderr_outputs_are_found_unless_the_cell_asks_for_them(tmp_path):
    warning = stream("stderr", "UserWarning: something\n")
    flagged = small_notebook(tmp_path / "a.ipynb", [stream("stdout", "ok\n"), warning])
    assert render.stderr_outputs(flagged) == [(1, "UserWarning: something\n")]
    asked = small_notebook(tmp_path / "b.ipynb", [warning], tags=[render.STDERR_TAG])
    assert render.stderr_outputs(asked) == []


def test_missing_mathjax_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(render, "MATHJAX_PACKAGE", "no_such_package_here")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps jupyter-server-mathjax"):
        render.mathjax_source()
