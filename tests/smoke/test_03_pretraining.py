import pytest

from ecomrec.config import PROFILES

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def metrics(run_notebook, real_data_dir):
    return run_notebook("03_pretraining")


def test_corpus_has_every_source(metrics):
    for source in ("homedepot_titles", "office_titles", "office_descriptions", "synthetic_queries"):
        assert metrics[f"pretrain/train/{source}/texts"] > 0
    assert metrics["pretrain/heldout/corpus/texts"] == PROFILES["smoke"].mlm_heldout


def test_held_out_loss_falls(metrics):
    assert metrics["pretrain/heldout/scratch_bert/loss_after"] < metrics["pretrain/heldout/scratch_bert/loss_before"]
    assert metrics["pretrain/heldout/minilm_fitted_head/loss"] < metrics["pretrain/heldout/minilm_random_head/loss"]
    assert metrics["pretrain/heldout/minilm_dapt/loss"] < metrics["pretrain/heldout/minilm_fitted_head/loss"]
    assert 1e6 < metrics["pretrain/train/scratch_bert/parameters"] < 1e7


def test_every_stage_is_selected_on_held_out_loss(metrics):
    smoke = PROFILES["smoke"]
    for stage, budget in (("scratch_bert", smoke.mlm_scratch_steps), ("minilm_head", smoke.mlm_head_steps),
                          ("minilm_dapt", smoke.mlm_adapt_steps)):
        assert 0 <= metrics[f"pretrain/heldout/{stage}/best_step"] <= budget, stage
        assert metrics[f"pretrain/train/{stage}/converged"] in (0.0, 1.0), stage


def test_cost_is_reported(metrics):
    assert metrics["pretrain/all/notebook/seconds"] > 0
    assert 0 < metrics["pretrain/all/notebook/peak_memory_gib"] < 8


def test_scratch_model_is_checked_against_piece_frequencies_and_for_collapse(metrics):
    import math

    assert 0 < metrics["pretrain/heldout/unigram/loss"] < math.log(8_192)  # better than a uniform guess
    assert -1 <= metrics["pretrain/heldout/scratch_bert/mean_pair_cosine"] <= 1
