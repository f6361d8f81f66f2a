"""Two smoke runs of the cheapest notebook that trains something (03: a BERT from scratch and domain-adaptive
MLM of MiniLM) with the same seed record identical metrics, timings aside."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "03_pretraining"
TIMINGS = re.compile(r"(seconds|per_second|peak_memory_gib|minutes|_ms)$")  # how fast, not what was learnt


def test_same_seed_same_metrics(run_notebook, smoke_dirs, real_data_dir, tmp_path):
    first = run_notebook(NOTEBOOK)
    # the second run reads copies of what 01 and 02 wrote, and writes elsewhere: the suite's artifacts stay as they are
    reports, artifacts = tmp_path / "reports", tmp_path / "artifacts"
    for part in ("data", "augment"):
        shutil.copytree(smoke_dirs["artifacts"] / "smoke" / part, artifacts / "smoke" / part)
    (reports / "smoke" / "metrics").mkdir(parents=True)
    for name in ("01_data", "02_augmentation"):
        for suffix in (".json", ".complete"):
            shutil.copy(smoke_dirs["reports"] / "smoke" / "metrics" / f"{name}{suffix}", reports / "smoke" / "metrics")
    source = tmp_path / f"{NOTEBOOK}.ipynb"
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "--output", str(source),
                    str(ROOT / "notebooks" / f"{NOTEBOOK}.py")], check=True)
    done = subprocess.run([sys.executable, "-m", "papermill", "--kernel", "python3", "--language", "python", "--cwd", str(ROOT), str(source),
                           str(tmp_path / "executed.ipynb"), "-p", "PROFILE", "smoke", "-p", "SEED", "42",
                           "-r", "ARTIFACT_DIR", str(artifacts), "-r", "REPORT_DIR", str(reports)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    second = json.loads((reports / "smoke" / "metrics" / f"{NOTEBOOK}.json").read_text())
    learnt = sorted(key for key in first if not TIMINGS.search(key))
    assert len(learnt) >= 8 and sorted(k for k in second if not TIMINGS.search(k)) == learnt
    assert {key: second[key] for key in learnt} == {key: first[key] for key in learnt}
