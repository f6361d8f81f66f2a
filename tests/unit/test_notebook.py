import json
import time
from pathlib import Path

import pytest

from ecomrec import notebook, reporting

ROOT = Path(__file__).resolve().parents[2]


def test_begin_needs_its_prerequisites_completed_not_merely_started(tmp_path):
    metrics_dir = tmp_path / "reports" / "smoke" / "metrics"

    def begin_06():
        notebook.begin("06_evaluation", "smoke", 42, "cpu", str(tmp_path / "artifacts"), str(tmp_path / "reports"),
                       needs=("04_finetuning", "05_hybrid_recommendation"))

    for name in ("04_finetuning", "05_hybrid_recommendation"):  # both ran to their last cell
        reporting.start(name, metrics_dir)
        reporting.complete(profile="smoke", seed=42)
    reporting.start("05_hybrid_recommendation", metrics_dir)  # a new run of 05 began... and stopped early
    assert (metrics_dir / "05_hybrid_recommendation.json").is_file()
    with pytest.raises(FileNotFoundError, match="05_hybrid_recommendation has not completed"):
        begin_06()
    reporting.complete(profile="smoke", seed=7)  # it completed, but with another seed
    with pytest.raises(ValueError, match="05_hybrid_recommendation last completed with seed 7"):
        begin_06()


def test_code_version_names_the_commit_and_whether_the_tree_was_changed(tmp_path):
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    assert notebook.code_version(tmp_path) == {"commit": None, "code": None, "uncommitted_changes": None}  # no checkout
    git("init", "-q")
    for path in ("ecomrec/a.py", "notebooks/01_x.py", "pyproject.toml", "README.md"):
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text("x = 1\n")
    commit = ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam"]
    git("add", ".")
    git(*commit, "first")
    first = notebook.code_version(tmp_path)
    assert first["commit"] == git("rev-parse", "HEAD") and first["uncommitted_changes"] is False
    (tmp_path / "README.md").write_text("y\n")  # documentation: the same code, before and after its commit
    assert notebook.code_version(tmp_path) == first
    git(*commit, "docs")
    docs = notebook.code_version(tmp_path)
    assert docs["code"] == first["code"] and docs["commit"] != first["commit"]
    (tmp_path / "ecomrec" / "a.py").write_text("x = 2\n")  # code: changed, then committed
    assert notebook.code_version(tmp_path) == docs | {"uncommitted_changes": True}
    git(*commit, "code")
    assert notebook.code_version(tmp_path)["code"] != first["code"]


def test_begin_without_prepared_data_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data PROFILE=smoke"):
        notebook.begin("03_pretraining", "smoke", 42, "cpu", str(tmp_path / "artifacts"), str(tmp_path / "reports"),
                       "pretrain")


def test_finish_records_wall_time_and_peak_memory(tmp_path):
    path = reporting.start("07_deployment", tmp_path)
    assert notebook.finish("deploy", time.perf_counter() - 2.0) is None  # nothing echoed under the cell
    recorded = json.loads(path.read_text())
    assert 2.0 <= recorded["deploy/all/notebook/seconds"] < 60
    assert 0.01 < recorded["deploy/all/notebook/peak_memory_gib"] < 64  # GiB, whatever ru_maxrss's unit


def test_quiet_libraries_silences_library_bars_but_not_the_courses():
    # in a fresh process: the settings are process-wide and read when tqdm is imported
    import subprocess
    import sys

    code = ("import warnings\n"
            "from ecomrec.notebook import quiet_libraries\n"
            "quiet_libraries()\n"
            "from tqdm import tqdm\n"
            "from ecomrec.progress import progress\n"
            "assert tqdm(range(3)).disable  # a library bar that does not say disable=\n"
            "bar = progress(range(3), desc='ours')\n"
            "assert not bar.disable\n"
            "list(bar)\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('default')\n"
            "    quiet_libraries()\n"
            "    warnings.warn('IProgress not found. Please update jupyter and ipywidgets.')\n"
            "    warnings.warn('something the course should hear about')\n"
            "assert [str(w.message) for w in caught] == ['something the course should hear about'], caught\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ours: 100%" in done.stdout and "ours" not in done.stderr  # the course's bar, on stdout


def test_every_verdict_comes_from_the_one_helper():
    """"helped / hurt / no detectable difference" is decided in one place (ecomrec.metrics.verdict)."""
    import re

    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.py"))
    assert sources
    for source in sources:
        text = source.read_text()
        assert not re.search(r"def verdict|[\"']helped[\"'] if", text), f"{source.name} decides a verdict itself"


def test_cpu_description_reads_the_instruction_sets():
    from ecomrec.notebook import cpu_description

    text = cpu_description("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx avx2 avx512f avx512_vnni\n")
    assert text == "AMD EPYC 9R14: AVX2 yes, AVX-512 yes, VNNI (int8 dot products) yes, AVX512-BF16 no, AMX no"
    assert "AVX2 no" in cpu_description("model name : old\nflags : fpu sse2\n")
    assert cpu_description().count(" yes") + cpu_description().count(" no") == 5  # this machine, whatever it has


def test_every_chapter_is_a_lesson():
    """Objectives at the top, exercises at the end, and no code cell over 30 lines: machinery lives in ecomrec."""
    import jupytext

    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.py"))
    assert len(sources) >= 8
    for source in sources:
        cells = jupytext.read(source).cells
        text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
        assert "**Learning objectives.**" in text and "## Exercises" in text, source.name
        long = [(i, n) for i, c in enumerate(cells) if c.cell_type == "code"
                and (n := sum(1 for line in c.source.splitlines() if line.strip())) > 30]
        assert long == [], f"{source.name}: code cells (index, lines) over 30 lines: {long}"


def _unbound_names(source: str) -> set[str]:
    """Names a script reads that nothing in it binds (assignment, import, def, class, loop, comprehension, with,
    except, argument) and that are not builtins: a name used but never imported fails only when its cell runs,
    possibly an hour into a full report. Scope-blind on purpose: a name bound anywhere counts as bound."""
    import ast
    import builtins

    tree, bound, read = ast.parse(source), set(dir(builtins)) | {"display", "get_ipython"}, set()  # IPython's too
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, (ast.Store, ast.Del)) else read).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, ast.NamedExpr):
            bound.add(node.target.id)
    return read - bound


def test_unbound_names_finds_a_name_that_was_never_imported():
    assert _unbound_names("from m import a\nb = a(1)\nc = Wrapper(b)\nprint([x for x in range(3)], len)") == {"Wrapper"}


@pytest.mark.parametrize("source", sorted((ROOT / "notebooks").glob("*.py")), ids=lambda p: p.stem)
def test_every_name_a_notebook_reads_is_bound(source):
    assert _unbound_names(source.read_text()) == set(), f"{source.name} reads names it never binds or imports"
