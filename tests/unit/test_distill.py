"""Distillation (Margin-MSE): the triples it trains on and the query-side student against a cached catalogue."""

import numpy as np
import pandas as pd
import pytest
import torch

from ecomrec import config as C
from ecomrec.models.distill import NEGATIVE, POSITIVE, MarginScale, margin_triples, matched_scale, teacher_logits, train_margin_mse
from ecomrec.models.selection import BUDGET, PATIENCE
from fixture_files import TINY_TITLES as TITLES, TINY_TRAIN as TRAIN, TINY_VALID as VALID, tiny_sentence_model

Q, P = C.COL_QUERY_ID, C.COL_PRODUCT_ID


def _frame(rows):
    return pd.DataFrame(rows, columns=[Q, P])


def test_margin_triples_pair_positives_with_candidates_that_are_not_relevant():
    positives = _frame([(1, "a"), (1, "b"), (1, "c"), (2, "x"), (3, "y")])
    candidates = _frame([(1, "a"), (1, "d"), (1, "e"), (1, "f"), (2, "x"), (2, "z"), (3, "y"), (4, "w")])
    triples = margin_triples(candidates, positives, positives_per_query=2, negatives_per_query=2, seed=0)
    assert list(triples.columns) == [Q, POSITIVE, NEGATIVE]
    relevant = set(zip(positives[Q], positives[P]))
    assert not any((q, n) in relevant for q, n in zip(triples[Q], triples[NEGATIVE]))  # 'a' is never a negative of 1
    assert all((q, p) in relevant for q, p in zip(triples[Q], triples[POSITIVE]))
    counts = triples.groupby(Q).agg(positives=(POSITIVE, "nunique"), negatives=(NEGATIVE, "nunique"))
    assert counts.loc[1].tolist() == [2, 2] and len(triples[triples[Q] == 1]) == 4  # every positive × every negative
    assert counts.loc[2].tolist() == [1, 1]
    assert 3 not in counts.index and 4 not in counts.index  # 3: no candidate left; 4: no positive
    assert triples.equals(margin_triples(candidates, positives, 2, 2, seed=0))
    drawn = {tuple(sorted(margin_triples(candidates, positives, 2, 1, seed=s).query(f"{Q} == 1")[NEGATIVE].unique())) for s in range(20)}
    assert len(drawn) > 1  # the draw depends on the seed
    with pytest.raises(ValueError):
        margin_triples(candidates, positives, 0, 2)


def test_teacher_logits_invert_the_sigmoid_and_stay_finite():
    logits = np.array([-3.0, 0.0, 2.5])
    assert np.allclose(teacher_logits(1 / (1 + np.exp(-logits))), logits)
    assert np.isfinite(teacher_logits([0.0, 1.0])).all() and teacher_logits([0.0, 1.0])[1] > 13
    with pytest.raises(ValueError):
        teacher_logits([0.5, np.nan])


def test_margin_scale_starts_at_its_initial_value():
    scale = MarginScale(20.0)
    assert scale(torch.tensor([0.5])).item() == pytest.approx(10.0)
    with pytest.raises(ValueError):
        MarginScale(0.0)


def _setup(tmp_path):
    model = tiny_sentence_model(tmp_path)
    catalogue = model.encode(TITLES, normalize_embeddings=True)
    queries = [q for q, _ in TRAIN] + [q for q, _ in VALID]
    # a teacher that knows the answer: each train query's product beats every other product by 8 logits
    rows = [(i, p, n) for i, (_, p) in enumerate(TRAIN) for n in range(len(TITLES)) if n != p]
    query_index, positive_index, negative_index = map(np.array, zip(*rows))
    valid_targets = torch.tensor([p for _, p in VALID])

    def valid_loss(encoder, vectors) -> float:
        q = torch.from_numpy(encoder.encode(queries[len(TRAIN):], normalize_embeddings=True))
        return torch.nn.functional.cross_entropy(20 * q @ torch.from_numpy(vectors).T, valid_targets).item()

    return model, catalogue, queries, (query_index, positive_index, negative_index, np.full(len(rows), 8.0)), valid_loss


def test_margin_mse_student_learns_the_teachers_order_on_a_tiny_catalogue(tmp_path):
    model, catalogue, queries, triples, valid_loss = _setup(tmp_path)
    fit = train_margin_mse(model, queries, *triples, catalogue, lambda m, v: -valid_loss(m, v), doc_map_rank=4,
                           batch_size=8, learning_rate=3e-3, map_learning_rate=1e-2, eval_every=5, patience=4,
                           max_epochs=6)
    before = -fit.history["valid"].iloc[0]
    assert fit.history["step"].iloc[0] == 0 and fit.best_step > 0
    assert valid_loss(model, fit.catalogue(catalogue)) == pytest.approx(-fit.best_valid, abs=1e-4)  # best restored
    assert -fit.best_valid < 0.8 * before
    assert fit.history["loss"].iloc[-1] < fit.history["loss"].iloc[1]
    assert fit.doc_map is not None and fit.stopped in (PATIENCE, BUDGET)


def test_the_scale_starts_where_the_students_margins_match_the_teachers(tmp_path):
    model, catalogue, queries, (qi, pi, ni, margins), _ = _setup(tmp_path)
    documents = catalogue / np.linalg.norm(catalogue, axis=1, keepdims=True)
    q = model.encode(queries, normalize_embeddings=True)
    student = (q[qi] * documents[pi]).sum(-1) - (q[qi] * documents[ni]).sum(-1)
    scale = matched_scale(model, queries, qi, pi, ni, margins, documents)
    assert np.sqrt(np.mean((scale * student) ** 2)) == pytest.approx(8.0, rel=1e-3)  # the teacher's margins are all 8
    with pytest.raises(ValueError, match="no scale"):
        matched_scale(model, queries, qi, pi, ni, np.zeros(len(qi)), documents)


def test_margin_mse_keeps_the_student_when_valid_never_improves(tmp_path):
    model, catalogue, queries, triples, _ = _setup(tmp_path)
    start = [p.detach().clone() for p in model.parameters()]
    fit = train_margin_mse(model, queries, *triples, catalogue, lambda m, v: 0.0, doc_map_rank=4, batch_size=8,
                           learning_rate=1e-2, eval_every=2, patience=2, max_epochs=5)
    assert fit.best_step == 0 and fit.stopped == PATIENCE
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters()))
    assert np.allclose(fit.catalogue(catalogue), catalogue / np.linalg.norm(catalogue, axis=1, keepdims=True), atol=1e-6)


def test_margin_mse_rejects_bad_input(tmp_path):
    model, catalogue, queries, (qi, pi, ni, margins), valid_loss = _setup(tmp_path)
    with pytest.raises(ValueError, match="one of each"):
        train_margin_mse(model, queries, qi, pi, ni[:-1], margins, catalogue, valid_loss, batch_size=4)
    with pytest.raises(ValueError, match="finite"):
        train_margin_mse(model, queries, qi, pi, ni, np.where(np.arange(len(qi)) == 3, np.nan, margins), catalogue,
                         valid_loss, batch_size=4)
    with pytest.raises(ValueError, match="outside"):
        train_margin_mse(model, queries, qi, pi, np.where(np.arange(len(qi)) == 0, 99, ni), margins, catalogue,
                         valid_loss, batch_size=4)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_margin_mse(model, queries, qi[:3], pi[:3], ni[:3], margins[:3], catalogue, valid_loss, batch_size=4)
