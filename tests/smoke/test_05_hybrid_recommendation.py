import pytest

from floors import failures

pytestmark = pytest.mark.smoke
MODELS = ("popularity", "ItemKNN", "ALS", "BPR", "SASRec", "SASRec_plus_sequence_views", "content",
          "content_plus_synthetic_queries", "weighted_fusion", "reciprocal_rank_fusion", "learned_fusion")


@pytest.fixture(scope="module")
def metrics(run_notebook, real_data_dir):
    return run_notebook("05_hybrid_recommendation")


def test_every_model_is_scored_with_intervals(metrics):
    for model in MODELS:
        for metric in ("hr@10", "ndcg@10", "mrr", "recall@20"):
            value = metrics[f"rec/test/{model}/{metric}"]
            assert 0 <= metrics[f"rec/test/{model}/{metric}_ci_low"] <= value <= metrics[f"rec/test/{model}/{metric}_ci_high"] <= 1
        assert metrics[f"rec/test/{model}/recall@20"] >= metrics[f"rec/test/{model}/hr@10"]


def test_models_beat_chance(metrics):
    chance = 10 / metrics["rec/all/protocol/items"]  # HR@10 of a random ranking
    for model in ("ItemKNN", "ALS", "BPR"):
        assert metrics[f"rec/test/{model}/hr@10"] > chance, model
    for model in ("content", "learned_fusion", "weighted_fusion"):
        assert metrics[f"rec/test/{model}/hr@10"] > 3 * chance, model


def test_sasrec_loss_falls_and_epoch_time_is_reported(metrics):
    for model in ("SASRec", "SASRec_plus_sequence_views"):
        assert metrics[f"rec/train/{model}/loss_last"] < metrics[f"rec/train/{model}/loss_first"]
        assert metrics[f"rec/train/{model}/epoch_seconds"] > 0


def test_beyond_accuracy_and_hybrid_search(metrics):
    assert metrics["rec/test/popularity/coverage"] < metrics["rec/test/content/coverage"]
    assert 0 < metrics["rec/test/learned_fusion/candidate_recall"] <= 1
    assert 0 <= metrics["hybrid_search/valid/weighted_fusion/dense_weight"] <= 1
    for system in ("BM25", "fine-tuned_bi-encoder", "RRF"):
        assert 0 < metrics[f"hybrid_search/test/{system}/ndcg@10"] <= 1
    assert metrics["rec/all/notebook/peak_memory_gib"] < 8


def test_quality_floors(metrics):  # a model that regressed to nothing fails here (tests/floors.py)
    assert failures("05_hybrid_recommendation", metrics) == []
