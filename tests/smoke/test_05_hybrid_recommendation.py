import pytest

from floors import failures

pytestmark = pytest.mark.smoke
SINGLES = ("popularity", "ItemKNN", "EASE", "ALS", "BPR", "SASRec", "SASRec_plus_sequence_views", "content",
           "content_plus_synthetic_queries")
HYBRIDS = ("weighted_fusion", "reciprocal_rank_fusion", "learned_fusion")


@pytest.fixture(scope="module")
def metrics(run_notebook, real_data_dir):
    return run_notebook("05_hybrid_recommendation")


def test_every_model_is_scored_with_intervals_under_both_views(metrics):
    for model in SINGLES + HYBRIDS:
        for metric in ("hr@10", "ndcg@10", "mrr", "recall@20"):
            value = metrics[f"rec/test/{model}/{metric}"]
            assert 0 <= metrics[f"rec/test/{model}/{metric}_ci_low"] <= value <= metrics[f"rec/test/{model}/{metric}_ci_high"] <= 1
        assert metrics[f"rec/test/{model}/recall@20"] >= metrics[f"rec/test/{model}/hr@10"]
    for model in SINGLES:
        assert 0 <= metrics[f"rec/test_training_history/{model}/ndcg@10"] <= 1
        assert 0 <= metrics[f"rec/valid/{model}/ndcg@10"] <= 1
    # RecBole's view: SASRec reads the validation item, the general models score from the training matrix
    assert metrics["rec/test_recbole_view/SASRec/ndcg@10"] == metrics["rec/test/SASRec/ndcg@10"]
    assert metrics["rec/test_recbole_view/ItemKNN/ndcg@10"] == metrics["rec/test_training_history/ItemKNN/ndcg@10"]


def test_models_beat_chance(metrics):
    chance = 10 / metrics["rec/all/protocol/items"]  # HR@10 of a random ranking
    for model in ("ItemKNN", "EASE", "ALS", "BPR"):
        assert metrics[f"rec/test/{model}/hr@10"] > chance, model
    for model in ("content", "learned_fusion", "weighted_fusion"):
        assert metrics[f"rec/test/{model}/hr@10"] > 3 * chance, model


def test_searches_ran_their_budgets_and_sasrec_early_stopped_on_valid(metrics):
    for model in ("ItemKNN", "EASE", "ALS", "BPR", "SASRec"):
        assert metrics[f"rec/valid/{model}_search/trials"] >= 2
        assert metrics[f"rec/valid/{model}_search/seconds"] > 0
    for model in ("SASRec", "SASRec_plus_sequence_views"):
        assert 1 <= metrics[f"rec/valid/{model}/best_epoch"] <= metrics[f"rec/train/{model}/epochs_run"]
        assert metrics[f"rec/train/{model}/loss_at_best_epoch"] < metrics[f"rec/train/{model}/loss_first"]
        assert metrics[f"rec/train/{model}/epoch_seconds"] > 0


def test_sequence_views_are_compared_under_each_budget_rule_over_seeds(metrics):
    plain = "rec/test_seeds/SASRec/ndcg@10"
    # seed 0's plain SASRec is the main table's: the seeds' range holds it
    assert metrics[f"{plain}_seed_min"] <= metrics["rec/test/SASRec/ndcg@10"] <= metrics[f"{plain}_seed_max"]
    for rule in ("each_to_its_own_convergence", "equal_optimiser_steps", "equal_epochs"):
        key = f"rec/test_seeds/SASRec_plus_views_{rule}_vs_SASRec/ndcg@10_delta"
        assert metrics[f"{key}_low"] <= metrics[key] <= metrics[f"{key}_high"], rule
        assert metrics[f"{key}_seed_min"] <= metrics[key] + 1e-12 and metrics[key] <= metrics[f"{key}_seed_max"] + 1e-12, rule
    assert metrics["rec/train/sequence_view_rules/seconds"] > 0


def test_second_protocol_augmentation_and_cold_items(metrics):
    assert metrics["rec/test_temporal/protocol/users"] > 50
    assert -1 <= metrics["rec/test_temporal/protocol/spearman_vs_leave_one_out"] <= 1
    for model in ("popularity", "ItemKNN", "EASE", "SASRec"):
        assert 0 <= metrics[f"rec/test_temporal/{model}/ndcg@10"] <= 1
    assert metrics["rec/test/cold_target_item/users"] > 0
    for model in ("ItemKNN", "EASE"):
        key = f"rec/test_cold_target_item/{model}_plus_cold-item_interactions_vs_{model}/ndcg@10_delta"
        assert metrics[f"{key}_low"] <= metrics[key] <= metrics[f"{key}_high"]


def test_beyond_accuracy_and_hybrid_search(metrics):
    assert metrics["rec/test/popularity/coverage"] < metrics["rec/test/content/coverage"]
    assert 0 < metrics["rec/test/learned_fusion/candidate_recall"] <= 1
    assert 0 <= metrics["hybrid_search/valid/weighted_fusion/dense_weight"] <= 1
    for system in ("BM25", "fine-tuned_bi-encoder", "RRF"):
        assert 0 < metrics[f"hybrid_search/test/{system}/ndcg@10"] <= 1
    assert metrics["rec/all/notebook/peak_memory_gib"] < 8


def test_quality_floors(metrics):  # a model that regressed to nothing fails here (tests/floors.py)
    assert failures("05_hybrid_recommendation", metrics) == []
