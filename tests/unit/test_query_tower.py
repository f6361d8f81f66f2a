"""Model selection (early stopping) and query-side training against a fixed, cached catalogue."""

import math

import numpy as np
import pytest
import torch

from ecomrec.models.query_tower import DocumentMap, map_catalogue, train_query_tower, training_examples
from ecomrec.models.selection import BUDGET, PATIENCE, EarlyStopping
from fixture_files import TINY_TITLES as TITLES, TINY_TRAIN as TRAIN, TINY_VALID as VALID, tiny_sentence_model


def test_early_stopping_stops_after_patience_and_restores_the_best_state():
    net = torch.nn.Linear(2, 1)
    stop = EarlyStopping(patience=2)
    seen = {}
    for step, score in enumerate([0.1, 0.4, 0.3, 0.35]):
        with torch.no_grad():
            net.weight.fill_(step)
        seen[step] = net.weight.clone()
        done = stop.update(score, step, state=net.state_dict)
        assert done == (step == 3)
    assert (stop.best, stop.best_step, stop.stopped) == (0.4, 1, PATIENCE)
    stop.restore(net)
    assert torch.equal(net.weight, seen[1])  # a copy was kept, not a reference the later steps overwrote


def test_early_stopping_min_delta_budget_and_bad_input():
    stop = EarlyStopping(patience=3, min_delta=0.05)
    assert not stop.update(0.5, 0) and not stop.update(0.54, 1)  # +0.04 is not an improvement
    assert stop.best_step == 0 and stop.bad_evaluations == 1 and stop.stopped == BUDGET
    with pytest.raises(ValueError, match="diverged"):
        stop.update(math.nan, 2)
    with pytest.raises(RuntimeError):
        stop.restore(torch.nn.Linear(1, 1))  # no state was asked for
    with pytest.raises(ValueError):
        EarlyStopping(patience=0)


def test_document_map_starts_as_the_cached_catalogue():
    rng = np.random.default_rng(0)
    catalogue = rng.normal(size=(5, 8)).astype(np.float32)
    plain = map_catalogue(catalogue, None)
    assert np.allclose(np.linalg.norm(plain, axis=1), 1.0)
    assert np.allclose(map_catalogue(catalogue, DocumentMap(8, 2)), plain, atol=1e-6)
    with pytest.raises(ValueError):
        DocumentMap(8, 0)


def test_training_examples_group_each_querys_positives():
    pairs, positives = training_examples([0, 1, 0, 2, 0], [5, 6, 7, 5, 5])
    assert pairs.shape == (5, 2)
    assert [p.tolist() for p in positives] == [[5, 7], [6], [5]]


def _setup(tmp_path):
    model = tiny_sentence_model(tmp_path)
    catalogue = model.encode(TITLES, normalize_embeddings=True)
    queries = [q for q, _ in TRAIN] + [q for q, _ in VALID]
    valid_rows = np.arange(len(TRAIN), len(queries))
    valid_targets = torch.tensor([p for _, p in VALID])

    def valid_loss(encoder, vectors) -> float:
        q = torch.from_numpy(encoder.encode([queries[i] for i in valid_rows], normalize_embeddings=True))
        return torch.nn.functional.cross_entropy(20 * q @ torch.from_numpy(vectors).T, valid_targets).item()

    return model, catalogue, queries, valid_loss


def test_query_tower_lowers_valid_loss_on_a_tiny_catalogue(tmp_path):
    model, catalogue, queries, valid_loss = _setup(tmp_path)
    fit = train_query_tower(model, queries, np.arange(len(TRAIN)), [p for _, p in TRAIN], catalogue,
                            lambda m, v: -valid_loss(m, v), doc_map_rank=4, batch_size=4, learning_rate=3e-3,
                            map_learning_rate=1e-2, eval_every=3, patience=5, max_epochs=15)
    before = -fit.history["valid"].iloc[0]
    assert fit.history["step"].iloc[0] == 0 and fit.best_step > 0
    assert valid_loss(model, fit.catalogue(catalogue)) == pytest.approx(-fit.best_valid, abs=1e-4)  # best restored
    assert -fit.best_valid < 0.8 * before
    assert fit.history["loss"].iloc[-1] < fit.history["loss"].iloc[1]
    assert fit.doc_map is not None and fit.stopped in (PATIENCE, BUDGET) and fit.pairs_per_second > 0


def test_query_tower_restores_the_best_evaluation_and_says_why_it_stopped(tmp_path):
    model, catalogue, queries, _ = _setup(tmp_path)
    scores, weights = iter([0.1, 0.2, 0.9, 0.3, 0.2, 0.1, 0.0]), []

    def scripted(encoder, vectors):  # the third evaluation is the best, whatever the model does
        weights.append(next(iter(encoder.parameters())).detach().clone())
        return next(scores)

    fit = train_query_tower(model, queries, np.arange(len(TRAIN)), [p for _, p in TRAIN], catalogue, scripted,
                            doc_map_rank=None, batch_size=4, learning_rate=1e-2, eval_every=2, patience=3,
                            max_epochs=20)
    assert fit.stopped == PATIENCE and fit.best_step == 4 and len(fit.history) == 6
    assert torch.equal(next(iter(model.parameters())), weights[2])
    assert not torch.equal(weights[2], weights[-1])


def test_query_tower_rejects_bad_input(tmp_path):
    model, catalogue, queries, valid_loss = _setup(tmp_path)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_query_tower(model, queries, [0, 1], [0, 1], catalogue, valid_loss, batch_size=4)
    with pytest.raises(ValueError, match="outside"):
        train_query_tower(model, queries, [0, 1], [0, 99], catalogue, valid_loss, batch_size=2)
