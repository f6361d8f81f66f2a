"""The Makefile re-runs a notebook when a parameter that changes its results changes (SEED, DEVICE, ...), and only
then: checked with a stand-in interpreter that logs what make asks of it instead of running notebooks."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_new_seed_rebuilds_the_page_and_the_same_seed_does_not(tmp_path):
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n"
                    "if [ \"$2\" = ecomrec.render ]; then touch \"${3%.ipynb}.html\"; fi\n")
    fake.chmod(0o755)
    page = tmp_path / "reports" / "smoke" / "01_data.html"

    def make(*overrides: str) -> list[str]:
        before = log.read_text().splitlines() if log.exists() else []
        subprocess.run(["make", "--no-print-directory", str(page), "PROFILE=smoke", f"PY={fake}",
                        f"REPORT_ROOT={tmp_path / 'reports'}", f"ARTIFACT_DIR={tmp_path / 'artifacts'}", *overrides],
                       cwd=ROOT, check=True, capture_output=True, text=True)
        return [line for line in log.read_text().splitlines()[len(before):] if "papermill" in line]

    first = make("SEED=42")
    assert len(first) == 1 and "-p SEED 42" in first[0] and page.is_file()
    assert make("SEED=42") == []  # nothing changed: nothing runs
    again = make("SEED=7")
    assert len(again) == 1 and "-p SEED 7" in again[0]  # the seed-42 page is not left in place
    assert make("SEED=7") == []
    assert len(make("SEED=7", "DEVICE=cpu")) == 1
    assert (tmp_path / "reports" / "smoke" / ".parameters").read_text().split()[:2] == ["SEED=7", "DEVICE=cpu"]
