import pytest

from ecomrec.config import PROFILES

pytestmark = pytest.mark.smoke
GENERATORS = ("templates", "scratch-sample", "scratch-beam")
STRATEGIES = ("uniform", "popularity", "bm25-hard", "dense-hard", "adversarial")


@pytest.fixture(scope="module")
def metrics(run_notebook, real_data_dir):
    return run_notebook("02_augmentation")


def test_generator_learns(metrics):
    before = metrics["augment/valid/scratch_generator/loss_before"]
    after = metrics["augment/valid/scratch_generator/loss_after"]
    assert after < before - 0.5  # even the smoke run's few steps must lower held-out loss clearly
    assert 1e6 < metrics["augment/train/scratch_generator/parameters"] < 5e6
    # held-out selection: the kept step is one of the steps run, and a run that ended before its budget converged
    steps = metrics["augment/train/scratch_generator/steps"]
    assert 0 < metrics["augment/valid/scratch_generator/best_step"] <= steps <= PROFILES["smoke"].gen_train_steps
    if steps < PROFILES["smoke"].gen_train_steps:
        assert metrics["augment/train/scratch_generator/converged"] == 1.0


def test_every_generator_generated_and_was_filtered(metrics):
    smoke = PROFILES["smoke"]
    for generator in GENERATORS:
        rate = metrics[f"augment/all/{generator}/keep_rate"]
        assert 0.0 <= rate <= 1.0
        assert metrics[f"augment/homedepot/{generator}/queries_generated"] > 0
    assert metrics["augment/homedepot/templates/queries_generated"] <= 3 * smoke.gen_products
    assert metrics["augment/office/templates/queries_kept"] > 0
    # templates copy title words, so BM25 round trips keep most of them
    assert metrics["augment/all/templates/keep_rate"] > 0.5


def test_triplets_for_every_strategy(metrics):
    smoke = PROFILES["smoke"]
    for strategy in STRATEGIES:
        assert 0 < metrics[f"augment/train/{strategy}/triplets"] <= 2 * smoke.triplet_anchors
    # hard negatives are closer to the query than uniform ones
    uniform = metrics["augment/train/uniform/mean_query_negative_cosine"]
    assert metrics["augment/train/dense-hard/mean_query_negative_cosine"] > uniform + 0.1
    assert metrics["augment/train/bm25-hard/mean_query_negative_cosine"] > uniform + 0.1


def test_recommendation_augmentation(metrics):
    assert metrics["augment/train/sequence_views/sequences"] > 0
    assert metrics["augment/train/cold_items/items"] >= 0
    assert metrics["augment/train/cold_items/synthetic_interactions"] <= 3 * metrics["augment/train/cold_items/items"]
