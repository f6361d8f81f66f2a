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
CURVE_SOURCES = ("SmolLM2_LoRA_04b", "SmolLM2_LoRA_04b_unfiltered", "templates_02", "scratch_model_02",
                 "SmolLM2_few-shot_examples_from_the_first_100")
UP_TO = {"SmolLM2_LoRA_04b_unfiltered": 100}  # the filter's ablation: trained at N <= 100 in smoke (N <= 1,000 in full)
WRITER_SAW = {"templates_02": 0, "SmolLM2_few-shot_examples_from_the_first_100": 100}  # the rest saw every query
NEGATIVES = ("plus_uniform_negatives", "plus_popularity_negatives", "plus_bm25-hard_negatives",
             "plus_dense-hard_negatives", "plus_adversarial_negatives", "full-catalogue_softmax")


@pytest.fixture(scope="module")
def metrics(run_notebook, real_data_dir, smoke_dirs):
    return run_notebook("06_evaluation")


def test_metrics_agree_with_ranx(metrics):
    assert metrics["eval/test/bm25_vs_ranx/max_abs_difference"] < 1e-9


def test_every_negatives_row_has_a_paired_interval(metrics):
    for row in NEGATIVES:
        low, diff, high = (metrics[f"eval/test/{row}/ndcg@10_delta{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert low <= diff <= high, row
        assert 0 <= metrics[f"eval/test/{row}/ndcg@10"] <= 1


def test_the_data_efficiency_curve(metrics):
    """At least three N values, every synthetic row's paired interval ordered, pools under one batch left out
    (and nothing recorded for them), templates never an upper bound, the few-shot writer one only below N = 100,
    the real-only rows trained with every seed."""
    sizes = sorted({int(m.group(1)) for key in metrics if (m := re.match(r"curve/test/real_only_N_(\d+)/ndcg@10$", key))})
    assert metrics["curve/train/all/sizes"] == len(sizes) >= 3 and sizes[0] == 0
    pools = {row: metrics[f"curve/train/{row}/pool_pairs"] for row in CURVE_SOURCES}
    left_out = [row for row, size in pools.items() if size < 32]
    assert metrics["curve/train/all/rows_left_out"] == len(left_out) < len(CURVE_SOURCES)
    trained = [row for row in CURVE_SOURCES if row not in left_out]
    assert 32 <= metrics["curve/train/all/synthetic_pairs_added"] <= min(pools[row] for row in trained)
    for row in left_out:
        assert not any(key.startswith(f"curve/test/{row}_N_") for key in metrics), row
    for row in trained:
        for n in sizes:
            key = f"curve/test/{row}_N_{n}"
            if n > UP_TO.get(row, n):
                assert not any(k.startswith(key + "/") for k in metrics), key
                continue
            low, diff, high = (metrics[f"{key}/ndcg@10_delta{s}"] for s in ("_ci_low", "", "_ci_high"))
            assert low <= diff <= high and -1 <= diff <= 1, key
            assert metrics[f"{key}/ndcg@10_delta_seed_min"] <= metrics[f"{key}/ndcg@10_delta_seed_max"], key
            assert metrics[f"{key}/upper_bound"] == (n < WRITER_SAW.get(row, sizes[-1])), key
    for n in sizes[1:-1]:
        assert metrics[f"curve/test/real_only_N_{n}/seeds"] == PROFILES["smoke"].curve_seeds
    assert 0 < metrics["curve/valid/all/converged_share"] <= 1
    assert "SmolLM2_few-shot_examples_from_the_first_100" in trained  # the N-respecting writer must reach the curve
    assert metrics["curve/train/SmolLM2_few-shot_examples_from_the_first_100/products_per_second"] > 0
    # the course's SmolLM2 total is 04b's recorded minutes plus this writer's
    fewshot_minutes = metrics["curve/train/SmolLM2_few-shot_examples_from_the_first_100/seconds"] / 60
    assert metrics["curve/all/smollm2_04b_and_06/minutes"] > fewshot_minutes > 0


def test_the_filter_ablation_pairs_filtered_with_unfiltered_where_both_ran(metrics):
    """Filtered against unfiltered SmolLM2 LoRA queries (the same S pairs added), at each N <= 100 both rows
    reached, with ordered intervals; the filter keeps part of the writer's distinct queries, never more."""
    pools = {row: metrics[f"curve/train/{row}/pool_pairs"] for row in ("SmolLM2_LoRA_04b", "SmolLM2_LoRA_04b_unfiltered")}
    if min(pools.values()) < 32:
        assert not any(key.startswith("curve/test/SmolLM2_LoRA_filtered_vs_unfiltered") for key in metrics)
        return
    assert pools["SmolLM2_LoRA_04b"] <= pools["SmolLM2_LoRA_04b_unfiltered"]
    assert 0 < metrics["curve/train/SmolLM2_LoRA_04b_unfiltered/kept_share"] <= 1
    sizes = sorted(int(m.group(1)) for key in metrics
                   if (m := re.match(r"curve/test/SmolLM2_LoRA_filtered_vs_unfiltered_N_(\d+)/ndcg@10_delta$", key)))
    assert sizes and sizes[0] == 0 and sizes[-1] <= 100, sizes
    for n in sizes:
        key = f"curve/test/SmolLM2_LoRA_filtered_vs_unfiltered_N_{n}"
        low, diff, high = (metrics[f"{key}/ndcg@10_delta{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert low <= diff <= high and -1 <= diff <= 1, key


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


def test_summary_carries_04b_doc2query_rows_with_computed_verdicts(metrics, smoke_dirs):
    summary = (smoke_dirs["reports"] / "smoke" / "summary.md").read_text()
    assert "pretrained LLM (SmolLM2-135M-Instruct, 04b)" in summary and "equal budget" not in summary.lower()
    for where in ("all test queries", "the cold test queries"):
        assert f"doc2query for BM25 (titles + kept synthetic queries against titles only, {where})" in summary
    line = next(ln for ln in summary.splitlines() if ln.startswith("- title + SmolLM2 LoRA queries:"))
    assert any(word in line for word in ("helped", "hurt", "no detectable difference")), line


def test_the_curve_is_sliced_to_the_cold_test_queries(metrics):
    """The curve's points scored on the cold test queries only: recorded beside the whole test set's, each
    synthetic row's Δ against real only with an ordered interval, and no key for a row that did not reach N."""
    assert 0 < metrics["curve/test_cold/all/queries"]
    cold = {key.split("/")[2] for key in metrics if key.startswith("curve/test_cold/") and key.endswith("/ndcg@10")}
    assert cold == {key.split("/")[2] for key in metrics
                    if key.startswith("curve/test/") and key.endswith("/ndcg@10") and "_N_" in key}
    for key in cold:
        assert 0 <= metrics[f"curve/test_cold/{key}/ndcg@10"] <= 1
        if not key.startswith("real_only"):
            low, diff, high = (metrics[f"curve/test_cold/{key}/ndcg@10_delta{s}"] for s in ("_ci_low", "", "_ci_high"))
            assert low <= diff <= high, key


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
