"""Masked-LM pretraining helpers: corpus split, fixed held-out masks, loss falls, encoder round trip."""

import numpy as np
import pandas as pd
import pytest

from ecomrec import config as C
from ecomrec.models import mlm
from ecomrec.models.lm import train_wordpiece_tokenizer

TITLES = ["cordless drill driver kit", "claw hammer steel handle", "garden hose nozzle brass",
          "interior wall paint white", "led light bulb soft white", "pvc pipe 3/4 in. x 10 ft.",
          "kitchen faucet stainless steel", "toilet seat round white"] * 3


def frames():
    items = pd.DataFrame({C.COL_ITEM: ["A1", "A2", "A3"], C.COL_TITLE: ["black ink pen", "stapler", None],
                          "description": ["smooth writing pen " * 40, None, "sturdy desk tray"]})
    products = pd.DataFrame({C.COL_PRODUCT_ID: range(len(TITLES)), C.COL_TITLE: TITLES})
    return {"homedepot/products": products, "office/items": items}


def test_corpus_holds_out_real_text_only_and_dedupes():
    train, heldout, counts = mlm.mlm_corpus(frames(), ["drill bits", "cordless drill driver kit"], heldout=3, seed=1)
    assert len(heldout) == 3 and not set(heldout) & set(train)
    assert "drill bits" in train and "drill bits" not in heldout
    assert train.count("cordless drill driver kit") + heldout.count("cordless drill driver kit") == 1
    assert all(len(t.split()) <= 64 for t in train + heldout)  # descriptions cut
    same_heldout = mlm.mlm_corpus(frames(), None, heldout=3, seed=1)[1]
    assert same_heldout == heldout  # switching synthetic text off leaves the held-out slice alone
    assert counts.loc["synthetic queries", "train"] == 1 and counts["held out"].sum() == 3
    with pytest.raises(ValueError):
        mlm.mlm_corpus(frames(), heldout=100)


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece_tokenizer(TITLES, vocab_size=200)


def test_fixed_masks_are_deterministic_and_mask_something(tokenizer):
    data = mlm.tokenize_texts(tokenizer, TITLES[:8])
    a, b = mlm.fixed_masks(tokenizer, data, seed=3), mlm.fixed_masks(tokenizer, data, seed=3)
    assert a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
    labels = np.concatenate([np.array(row) for row in a["labels"]])
    assert (labels != -100).sum() > 0 and (labels == -100).sum() > 0


def test_small_bert_loss_falls_and_encoder_loads_as_sentence_model(tokenizer, tmp_path):
    from ecomrec.models.encoders import sentence_encoder

    model = mlm.small_bert(tokenizer, layers=1, hidden=32, heads=2)
    result = mlm.train_mlm(model, tokenizer, TITLES, TITLES[:8], tmp_path / "ckpt", max_steps=40, batch_size=8,
                           learning_rate=3e-3, logging_steps=5, eval_steps=10, min_delta=0.0)
    assert result.eval_loss_after < result.eval_loss_before - 0.5
    assert len(result.history) == 8 and result.valid_history["step"].tolist() == [0, 10, 20, 30, 40]
    assert result.eval_loss_after == pytest.approx(result.valid_history["eval_loss"].min(), rel=1e-4)
    encoder = sentence_encoder(mlm.save_encoder(model, tokenizer, tmp_path / "enc"))
    emb = encoder.encode(["cordless drill", "paint"], normalize_embeddings=True)
    assert emb.shape == (2, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_bf16_masked_lm_training_runs_under_autocast(tokenizer, tmp_path):
    import torch

    model = mlm.small_bert(tokenizer, layers=1, hidden=32, heads=2)
    seen = []
    inner = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))  # inside the forward the Trainer autocasts
    inner.register_forward_hook(lambda module, args, out: seen.append(torch.is_autocast_enabled("cpu")))
    result = mlm.train_mlm(model, tokenizer, TITLES, TITLES[:8], tmp_path / "ckpt", max_steps=40, batch_size=8,
                           learning_rate=3e-3, logging_steps=5, bf16=True)
    assert seen and all(seen) and next(model.parameters()).dtype == torch.float32
    assert result.eval_loss_after < result.eval_loss_before - 0.5


def test_head_only_training_freezes_the_encoder(tokenizer, tmp_path):
    model = mlm.small_bert(tokenizer, layers=1, hidden=32, heads=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mlm.train_mlm(model, tokenizer, TITLES, TITLES[:8], tmp_path / "ckpt", max_steps=3, batch_size=8, train_only="cls")
    after = dict(model.named_parameters())
    assert all(torch_equal(before[n], after[n]) for n in before if n.startswith("bert."))
    assert not all(torch_equal(before[n], after[n]) for n in before if n.startswith("cls."))
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again for the next stage


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_bad_arguments(tokenizer, tmp_path):
    from ecomrec.models.encoders import sentence_encoder

    with pytest.raises(ValueError):
        mlm.train_mlm(mlm.small_bert(tokenizer, layers=1, hidden=32, heads=2), tokenizer, TITLES, TITLES, tmp_path, max_steps=0)
    with pytest.raises(FileNotFoundError, match="03_pretraining"):
        sentence_encoder(tmp_path / "nothing")


def test_sparse_head_gives_the_dense_loss(tokenizer):
    import torch
    from transformers import BertForMaskedLM

    model = mlm.small_bert(tokenizer, layers=1, hidden=32, heads=2).eval()
    dense = BertForMaskedLM(model.config).eval()
    dense.load_state_dict(model.state_dict())
    data = mlm.fixed_masks(tokenizer, mlm.tokenize_texts(tokenizer, TITLES[:8]), seed=0)
    batch = mlm.MLMCollator(tokenizer)(list(data))
    with torch.no_grad():
        assert torch.allclose(model(**batch).loss, dense(**batch).loss, atol=1e-5)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.shape[:2] == batch["input_ids"].shape  # without labels: every position


def test_unigram_loss_scores_the_fixed_masks_by_piece_frequency(tokenizer):
    from collections import Counter

    heldout = TITLES[:8]
    loss = mlm.unigram_loss(tokenizer, TITLES, heldout, seed=3)
    # the same masked pieces as train_mlm's held-out loss, scored from a count made here another way
    counts = Counter(piece for text in TITLES for piece in tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)))
    total = sum(counts.values()) + len(tokenizer)
    masks = mlm.fixed_masks(tokenizer, mlm.tokenize_texts(tokenizer, heldout), seed=3)
    labels = [label for row in masks["labels"] for label in row if label != -100]
    assert loss == pytest.approx(-np.mean([np.log((counts[label] + 1) / total) for label in labels]))
    assert 0 < loss < np.log(len(tokenizer))  # better than a uniform guess over the vocabulary


def test_unigram_loss_is_low_for_frequent_pieces_and_high_for_unseen_ones(tokenizer):
    frequent = mlm.unigram_loss(tokenizer, ["white paint white paint"] * 50, ["white paint white paint white"] * 20)
    unseen = mlm.unigram_loss(tokenizer, ["white paint white paint"] * 50, ["cordless drill driver kit"] * 20)
    assert frequent < 1.5 < unseen
    with pytest.raises(ValueError):
        mlm.unigram_loss(tokenizer, [], TITLES)
    with pytest.raises(ValueError):
        mlm.unigram_loss(tokenizer, TITLES, [])


def test_uses_context_only_clearly_under_the_unigram_baseline():
    assert mlm.uses_context(6.0, 6.75) and not mlm.uses_context(6.87, 6.75)
    assert not mlm.uses_context(6.75 - mlm.CONTEXT_MARGIN, 6.75)  # at the margin: not clearly under
    assert mlm.uses_context(6.70, 6.75, margin=0.01)
