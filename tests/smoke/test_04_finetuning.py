import math

import pytest

from floors import failures

from ecomrec.config import PROFILES

pytestmark = pytest.mark.smoke
ROWS = ("BM25", "MiniLM_zero-shot", "MiniLM_plus_MNRL", "DAPT_MiniLM_plus_MNRL", "scratch_BERT_plus_MNRL",
        "MiniLM_plus_MNRL_LoRA", "scratch_BERT_no_fine-tuning", "MiniLM_plus_MNRL_early-stopped")


@pytest.fixture(scope="module")
def metrics(run_notebook, real_data_dir):
    return run_notebook("04_finetuning")


def test_every_row_has_metrics_with_intervals(metrics):
    for row in ROWS:
        for metric in ("ndcg@10", "recall@100", "mrr@10"):
            value = metrics[f"search/test/{row}/{metric}"]
            assert metrics[f"search/test/{row}/{metric}_ci_low"] <= value <= metrics[f"search/test/{row}/{metric}_ci_high"]
            assert 0 <= value <= 1
    assert metrics["search/test/protocol/queries"] <= PROFILES["smoke"].search_test_queries


def test_held_out_loss_falls_for_every_bi_encoder(metrics):
    for row in (r for r in ROWS if "MNRL" in r and "early-stopped" not in r):  # the main row: selected on valid NDCG
        assert metrics[f"search/valid/{row}/mnrl_loss_after"] < metrics[f"search/valid/{row}/mnrl_loss_before"], row


def test_main_model_learns_and_says_why_it_stopped(metrics):
    main = "MiniLM_plus_MNRL_early-stopped"
    # its step-0 evaluation *is* zero-shot MiniLM, so a model that learnt nothing keeps step 0 and ties
    assert metrics[f"search/valid/{main}/ndcg@10"] > metrics["search/valid/MiniLM_zero-shot/ndcg@10"]
    assert metrics[f"search/train/{main}/pairs_at_best"] > 0
    assert metrics[f"search/train/{main}/stopped_by_patience"] in (0.0, 1.0)


def test_reranking_is_measured_against_its_first_stage(metrics):
    for setting in ("cross-encoder_alone", "interpolated"):
        key = f"search/test/reranked_{setting}"
        low, delta, high = (metrics[f"{key}/ndcg@10_delta_vs_first_stage{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert math.isfinite(delta) and low <= delta <= high, setting
        assert metrics[f"{key}/depth"] in PROFILES["smoke"].rerank_depths and 0 <= metrics[f"{key}/weight"] <= 1
    assert metrics["search/train/cross_encoder_hard_negatives/rows"] > 0
    assert metrics["search/train/cross_encoder/evaluations"] >= 2


def test_distillation_is_selected_on_valid_and_measured_against_its_student(metrics):
    assert metrics["search/train/distilled/triples"] > 0 and metrics["search/train/distilled/evaluations"] >= 2
    assert math.isfinite(metrics["search/train/distilled/teacher_margin_mean"])
    # step 0 is the student before distillation: the kept checkpoint is never worse on valid
    before = metrics["search/valid/distilled/ndcg@10_before"]
    assert 0 < before <= metrics["search/valid/distilled/ndcg@10"]
    low, delta, high = (metrics[f"search/test/distilled/ndcg@10_delta_vs_student_before{s}"] for s in ("_ci_low", "", "_ci_high"))
    assert math.isfinite(delta) and low <= delta <= high


def test_lora_trains_a_small_share(metrics):
    full, lora = (metrics[f"search/train/{r}/trainable_parameters"] for r in ("MiniLM_plus_MNRL", "MiniLM_plus_MNRL_LoRA"))
    assert 0 < lora < full / 10


def test_baselines_find_something_and_cross_encoder_is_scored(metrics):
    assert metrics["search/test/BM25/ndcg@10"] > 0.1 and metrics["search/test/MiniLM_zero-shot/ndcg@10"] > 0.1
    assert 0 < metrics["search/test/cross_encoder/rmse"] < 1.0
    # isotonic calibration on valid judgments: never worse than a wide margin over predicting the train mean
    assert metrics["search/test/cross_encoder_calibrated/rmse"] < metrics["search/test/train_mean/rmse"] + 0.05
    assert 0 < metrics["search/test/behaviour/queries"] <= 250
    for check in ("plural", "typo", "brand"):  # every sampled query has a last word and a longest word
        assert f"search/test/behaviour_{check}/pass_rate" in metrics, check
    assert metrics["search/all/notebook/peak_memory_gib"] < 8


def test_quality_floors(metrics):  # a model that regressed to nothing fails here (tests/floors.py)
    assert failures("04_finetuning", metrics) == []


def test_full_fine_tuning_and_lora_each_take_the_rate_with_the_lowest_valid_loss(metrics):
    for row, rates in (("MiniLM_plus_MNRL", ("2e-05", "5e-05", "0.0001")), ("MiniLM_plus_MNRL_LoRA", ("0.0003", "0.001", "0.003"))):
        losses = {rate: metrics[f"search/valid/{row}_lr_{rate}/mnrl_loss"] for rate in rates}
        kept = min(losses, key=losses.get)
        assert metrics[f"search/train/{row}/learning_rate"] == pytest.approx(float(kept)), (row, losses)
        assert metrics[f"search/valid/{row}/mnrl_loss_after"] == pytest.approx(losses[kept])


def test_every_encoded_catalogue_is_checked_for_collapse(metrics):
    from ecomrec.models.search import COLLAPSED_COSINE

    for row in ("MiniLM_plus_MNRL", "DAPT_MiniLM_plus_MNRL", "MiniLM_plus_MNRL_LoRA"):  # MiniLM starts: spread vectors
        assert -1 <= metrics[f"search/all/{row}/mean_pair_cosine"] < COLLAPSED_COSINE, row
    for row in ("scratch_BERT_plus_MNRL", "scratch_BERT_no_fine-tuning"):
        assert -1 <= metrics[f"search/all/{row}/mean_pair_cosine"] <= 1, row
