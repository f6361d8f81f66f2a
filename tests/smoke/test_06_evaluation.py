import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ecomrec.config import PROFILES
from ecomrec.reference import chapters
from floors import failures

pytestmark = pytest.mark.smoke
AUGMENTATION = ("plus_templates", "plus_generator", "plus_generator_plus_filter")
NEGATIVES = ("plus_uniform_negatives", "plus_popularity_negatives", "plus_bm25-hard_negatives",
             "plus_dense-hard_negatives", "plus_adversarial_negatives")


@pytest.fixture(scope="module")
def metrics(run_notebook, real_data_dir, smoke_dirs):
    return run_notebook("06_evaluation")


def test_metrics_agree_with_ranx(metrics):
    assert metrics["eval/test/bm25_vs_ranx/max_abs_difference"] < 1e-9


def test_every_ablation_row_has_a_paired_interval(metrics, smoke_dirs):
    batch = metrics["eval/train/augmentation/batch_size"]
    pools = {row: metrics[f"eval/train/{row}/pool_pairs"] for row in AUGMENTATION}
    left_out = [row for row, size in pools.items() if size < batch]  # under one batch: left out, and said so
    assert metrics["eval/train/augmentation/rows_left_out"] == len(left_out)
    trained = [row for row in AUGMENTATION if row not in left_out]
    if trained:  # S synthetic pairs in every trained augmentation row: at least one batch, at most any pool
        assert batch <= metrics["eval/train/augmentation/synthetic_pairs_per_row"] <= min(pools[r] for r in trained)
    summary = (smoke_dirs["reports"] / "smoke" / "summary.md").read_text()
    for row in left_out:
        assert not any(key.startswith(f"eval/test/{row}/") for key in metrics), row
        label = row.replace("plus_", "+ ", 1).replace("_plus_", " + ")
        assert f"- {label}: left out" in summary, label
    for row in (*trained, *NEGATIVES):
        low, diff, high = (metrics[f"eval/test/{row}/ndcg@10_delta{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert low <= diff <= high, row
        assert 0 <= metrics[f"eval/test/{row}/ndcg@10"] <= 1


def test_reference_row_reproduces_04(metrics):
    assert abs(metrics["eval/test/reference_minus_04/ndcg@10"]) < 0.02


def test_online_section(metrics, smoke_dirs):
    assert metrics["eval/test/online/ab_users_per_arm"] >= 1
    # interleaving and the offline metric must agree on the winner when the offline lift is clear (3 standard
    # errors over the test queries); within the noise either may win
    lift, sd = metrics["eval/test/online/offline_lift_ndcg@10"], metrics["eval/test/online/per_query_sd"]
    preference = metrics["eval/test/online/interleaving_preference_for_dense"]
    if abs(lift) > 3 * sd / PROFILES["smoke"].search_test_queries ** 0.5:
        assert preference * lift > 0, (preference, lift)
    assert 0 < metrics["eval/test/online/interleaving_decided_share"] <= 1
    summary = (smoke_dirs["reports"] / "smoke" / "summary.md").read_text()
    assert "Ablations" in summary and "users per arm" in summary


def test_summary_carries_the_llm_equal_budget_rows(metrics, smoke_dirs):
    summary = (smoke_dirs["reports"] / "smoke" / "summary.md").read_text()
    assert "pretrained LLM (SmolLM2-135M-Instruct, 04b)" in summary
    llm = json.loads((smoke_dirs["reports"] / "smoke" / "metrics" / "04b_llm_synthesis.json").read_text())
    for label, key in (("templates (filtered)", "templates_filtered"), ("SmolLM2 LoRA (filtered)", "SmolLM2_LoRA_filtered"),
                       ("real + SmolLM2", "real_plus_SmolLM2")):  # 04b's names
        line = next(ln for ln in summary.splitlines() if ln.startswith(f"- {label}:"))
        if f"llm/test/{key}/ndcg@10" in llm:
            assert any(word in line for word in ("helped", "hurt", "no detectable difference")), line
        else:  # 04b left the row out (its pool was under one batch): the summary must say so, not invent a verdict
            assert "left out" in line and llm[f"llm/train/{key}/pool_pairs"] < llm["llm/train/equal_budget/batch_size"], line
    assert "doc2query for BM25" in summary


def test_quality_floors(metrics):  # a model that regressed to nothing fails here (tests/floors.py)
    assert failures("06_evaluation", metrics) == []


def test_front_page_links_every_notebook(metrics, smoke_dirs):
    """The index `make report` ends with: every chapter in notebooks/ is linked (04b and any added later), the
    headline figures are pictures, and the summary names systems as the chapters do."""
    report = smoke_dirs["reports"] / "smoke"
    cmd = ["make", "--no-print-directory", str(report / "index.html"), "PROFILE=smoke", f"PY={sys.executable}",
           f"REPORT_ROOT={smoke_dirs['reports']}", f"ARTIFACT_DIR={smoke_dirs['artifacts']}"]
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    page = (report / "index.html").read_text()
    assert re.findall(r"<li><a href='([^']+)\.html'>", page) == chapters()  # every notebooks/ source
    for figure in ("search", "recommendation", "serving"):
        assert f"<img src='figures/{figure}.svg'" in page and (report / "figures" / f"{figure}.svg").is_file(), figure
    summary = (report / "summary.md").read_text()
    assert "<table>" in page and "| system |" not in page  # the summary as HTML tables
    assert "_plus_" not in summary and "MiniLM + MNRL" in summary
