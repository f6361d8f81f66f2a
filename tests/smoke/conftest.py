"""Run notebooks through the real Makefile pipeline (jupytext → papermill → nbconvert), smoke profile."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from browser import math_problems, rendered_dom
from ecomrec.render import stderr_outputs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def run_notebook(smoke_dirs):
    """Build `reports/smoke/<name>.html` with make (prerequisite notebooks first); check that the page reads
    cleanly (no stderr box the notebook did not ask for, every formula typeset offline); return its metrics."""

    def run(name: str) -> dict:
        target = smoke_dirs["reports"] / "smoke" / f"{name}.html"
        cmd = ["make", "--no-print-directory", str(target), "PROFILE=smoke", f"PY={sys.executable}",
               f"REPORT_ROOT={smoke_dirs['reports']}", f"ARTIFACT_DIR={smoke_dirs['artifacts']}"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}"
        assert target.is_file()
        assert stderr_outputs(target.with_suffix(".ipynb")) == [], f"{name}: stderr on the page"
        assert math_problems(rendered_dom(target)) == [], name
        return json.loads((smoke_dirs["reports"] / "smoke" / "metrics" / f"{name}.json").read_text())

    return run
