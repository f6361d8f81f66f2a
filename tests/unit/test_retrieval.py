"""Search evaluation and fine-tuning helpers (bi-encoder, LoRA, cross-encoder) on hand-made cases."""

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset

from ecomrec import config as C
from ecomrec.models import retrieval as R
from fixture_files import tiny_sentence_model


def judgments(rows):
    return pd.DataFrame(rows, columns=[C.COL_QUERY_ID, C.COL_PRODUCT_ID, C.COL_RELEVANCE])


def test_qrels_use_grade_minus_one_and_drop_queries_without_gain():
    frames = {"homedepot/judgments_test": judgments([(1, 10, 3.0), (1, 11, 1.0), (2, 12, 1.0), (3, 13, 2.0)])}
    qrels = R.search_qrels(frames, "test")
    assert sorted(qrels[C.COL_QUERY_ID].unique()) == [1, 3]
    assert dict(zip(qrels[C.COL_PRODUCT_ID], qrels["gain"])) == {10: 2.0, 11: 0.0, 13: 1.0}


def test_evaluate_run_by_hand():
    qrels = R.search_qrels({"homedepot/judgments_test": judgments([(1, 10, 3.0), (1, 11, 2.0), (1, 12, 1.0)])}, "test")
    # ranks: 12 (gain 0), 11 (gain 1), 99, 10 (gain 2)
    run = R.run_frame([1], np.array([[12, 11, 99, 10]]), np.array([[4.0, 3.0, 2.0, 1.0]]))
    scores = R.evaluate_run(qrels, run).loc[1]
    dcg = 1 / np.log2(3) + 2 / np.log2(5)
    idcg = 2 / np.log2(2) + 1 / np.log2(3)
    assert scores["ndcg@10"] == pytest.approx(dcg / idcg)
    assert scores["mrr@10"] == pytest.approx(1 / 2)  # product 12 has gain 0: not relevant
    assert scores["recall@100"] == pytest.approx(1.0)


def test_run_frame_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        R.run_frame([1, 2], np.array([[1, 2]]), np.array([[0.5, 0.4]]))


def test_relevance_label_round_trip():
    grades = np.array([1.0, 1.67, 2.33, 3.0])
    labels = R.relevance_to_label(grades)
    assert labels.min() == 0 and labels.max() == 1
    assert np.allclose(R.label_to_relevance(labels), grades)


def test_grade_calibration_is_monotone_and_lowers_rmse_of_biased_scores():
    rng = np.random.default_rng(0)
    grades = rng.choice([1.0, 2.0, 3.0], size=2_000, p=[0.2, 0.4, 0.4])
    scores = 0.1 * (grades - 1) + rng.normal(0, 0.05, size=grades.size)  # right order, wrong scale
    calibrate = R.fit_grade_calibration(scores, grades)
    raw_rmse = np.sqrt(np.mean((R.label_to_relevance(scores) - grades) ** 2))
    calibrated = calibrate(scores)
    assert np.sqrt(np.mean((calibrated - grades) ** 2)) < 0.5 * raw_rmse
    grid = np.linspace(-1, 1, 101)
    assert np.all(np.diff(calibrate(grid)) >= 0)  # order kept: re-ranking is unchanged
    assert calibrate(grid).min() >= 1.0 and calibrate(grid).max() <= 3.0


def test_grade_calibration_rejects_bad_input():
    with pytest.raises(ValueError):
        R.fit_grade_calibration([0.1, 0.2], [1.0])
    with pytest.raises(ValueError):
        R.fit_grade_calibration([0.5, 0.5], [1.0, 3.0])


def test_rerank_orders_by_the_cross_encoder():
    class Reverse:  # prefers shorter titles
        def predict(self, pairs, **kwargs):
            return np.array([-len(title) for _, title in pairs], dtype=float)

    run = R.run_frame([1], np.array([[10, 11, 12]]), np.array([[3.0, 2.0, 1.0]]))
    titles = {10: "a long title", 11: "mid title", 12: "x"}
    out = R.rerank(Reverse(), {1: "q"}, titles, run, depth=2)
    assert len(out) == 2  # only the top `depth` are re-scored
    assert out.sort_values("score", ascending=False)[C.COL_PRODUCT_ID].tolist() == [11, 10]


def test_rerank_cache_scores_each_pair_once():
    class Counting:
        def __init__(self):
            self.scored = []

        def predict(self, pairs, **kwargs):
            self.scored += pairs
            return np.array([-len(title) for _, title in pairs], dtype=float)

    titles = {10: "a long title", 11: "mid title", 12: "x"}
    first = R.run_frame([1], np.array([[10, 11, 12]]), np.array([[3.0, 2.0, 1.0]]))
    second = R.run_frame([1], np.array([[12, 11, 10]]), np.array([[3.0, 2.0, 1.0]]))
    model, cache = Counting(), {}
    a = R.rerank(model, {1: "q"}, titles, first, depth=2, cache=cache)
    b = R.rerank(model, {1: "q"}, titles, second, depth=2, cache=cache)
    assert sorted(title for _, title in model.scored) == ["a long title", "mid title", "x"]  # 11 scored once
    assert dict(zip(b[C.COL_PRODUCT_ID], b["score"]))[11] == dict(zip(a[C.COL_PRODUCT_ID], a["score"]))[11] == -9


def test_rerank_under_bf16_autocast_only_when_the_model_is_wrapped():
    import torch

    from ecomrec.models.search import Bf16Autocast

    class Recording:
        device = torch.device("cpu")

        def __init__(self):
            self.autocast = []

        def predict(self, pairs, **kwargs):
            self.autocast.append(torch.is_autocast_enabled("cpu"))
            return np.array([-len(title) for _, title in pairs], dtype=float)

    titles, run = {10: "a long title", 11: "mid title"}, R.run_frame([1], np.array([[10, 11]]), np.array([[2.0, 1.0]]))
    model = Recording()
    plain = R.rerank(model, {1: "q"}, titles, run, depth=2)
    wrapped = R.rerank(Bf16Autocast(model), {1: "q"}, titles, run, depth=2)
    assert model.autocast == [False, True]
    pd.testing.assert_frame_equal(plain, wrapped)

    class NoDevice:  # e.g. ONNX Runtime: autocast would do nothing, so asking for it is an error
        predict = Recording.predict

    with pytest.raises(TypeError, match="PyTorch"):
        Bf16Autocast(NoDevice())


@pytest.fixture(scope="module")
def pairs():
    return Dataset.from_dict({"anchor": ["drill", "hammer", "paint", "hose", "faucet", "toilet seat"] * 2,
                              "positive": ["cordless drill kit", "claw hammer", "white wall paint", "garden hose 50 ft",
                                           "kitchen faucet chrome", "round toilet seat"] * 2})


def top1_accuracy(model, pairs) -> float:
    """Share of anchors whose own positive is the most similar of the six products."""
    a = model.encode(pairs["anchor"][:6], normalize_embeddings=True)
    p = model.encode(pairs["positive"][:6], normalize_embeddings=True)
    return float(((a @ p.T).argmax(axis=1) == np.arange(6)).mean())


def test_biencoder_training_learns_the_pairs(pairs, tmp_path):
    model = tiny_sentence_model(tmp_path)
    anchors, positives = pairs["anchor"][:6], pairs["positive"][:6]
    loss_before = R.heldout_mnrl_loss(model, anchors, positives, batch_size=6)
    fit = R.train_biencoder(model, pairs, tmp_path / "ckpt", max_steps=30, batch_size=6, learning_rate=1e-3, logging_steps=5)
    # a random encoder can already rank these six pairs (queries share words with their titles), so the
    # test asks for a perfect ranking after training and a clearly lower loss, not a higher accuracy
    assert top1_accuracy(model, pairs) == 1.0
    assert R.heldout_mnrl_loss(model, anchors, positives, batch_size=6) < 0.5 * loss_before
    assert fit.history["loss"].iloc[-1] < fit.history["loss"].iloc[0]
    assert fit.trainable_parameters == fit.total_parameters


def test_lora_trains_only_adapters_and_merging_keeps_outputs(pairs, tmp_path):
    model = R.add_lora(tiny_sentence_model(tmp_path), rank=2, target_modules=("query", "value"))
    fit = R.train_biencoder(model, pairs, tmp_path / "ckpt", max_steps=4, batch_size=6, learning_rate=1e-2)
    assert 0 < fit.trainable_parameters < fit.total_parameters / 10
    adapted = model.encode(["drill", "garden hose"])
    merged = R.merge_lora(model).encode(["drill", "garden hose"])
    assert np.allclose(adapted, merged, atol=1e-5)
    assert type(model[0].model).__name__ == "BertModel"


def test_heldout_mnrl_loss_is_low_when_pairs_match():
    class Lookup:
        def encode(self, texts, **kwargs):
            vecs = {"a": [1, 0, 0, 0], "b": [0, 1, 0, 0], "c": [0, 0, 1, 0], "d": [0, 0, 0, 1]}
            return np.array([vecs[t[0]] for t in texts], dtype=np.float32)

    good = R.heldout_mnrl_loss(Lookup(), ["a", "b", "c", "d"], ["a1", "b1", "c1", "d1"], batch_size=4)
    bad = R.heldout_mnrl_loss(Lookup(), ["a", "b", "c", "d"], ["b1", "c1", "d1", "a1"], batch_size=4)
    assert good < 1e-6 < 10 < bad
    with pytest.raises(ValueError):
        R.heldout_mnrl_loss(Lookup(), ["a"], ["a"], batch_size=4)


def test_fuse_runs_by_reciprocal_ranks_and_by_weighted_min_max():
    from ecomrec.models.retrieval import fuse_runs

    a = pd.DataFrame({"query_id": ["q"] * 3, "product_id": ["x", "y", "z"], "score": [3.0, 2.0, 1.0]})
    b = pd.DataFrame({"query_id": ["q"] * 2, "product_id": ["z", "w"], "score": [10.0, 0.0]})
    rrf = fuse_runs({"a": a, "b": b}, rrf_k=60).set_index("product_id")["score"]
    assert rrf["z"] == pytest.approx(1 / 63 + 1 / 61) and rrf["x"] == pytest.approx(1 / 61) and rrf["w"] == pytest.approx(1 / 62)
    weighted = fuse_runs({"a": a, "b": b}, {"a": 0.25, "b": 0.75}).set_index("product_id")["score"]
    # min-max per query: a → x 1, y 0.5, z 0; b → z 1, w 0
    assert weighted.to_dict() == pytest.approx({"x": 0.25, "y": 0.125, "z": 0.75, "w": 0.0})
    with pytest.raises(ValueError):
        fuse_runs({"a": a, "b": b}, {"a": 1.0})


def test_condensed_list_keeps_judged_products_in_run_order():
    run = pd.DataFrame({C.COL_QUERY_ID: ["q"] * 4 + ["r"], C.COL_PRODUCT_ID: ["a", "x", "b", "y", "a"],
                        "score": [4.0, 3.0, 2.0, 1.0, 1.0]})
    judgments = pd.DataFrame({C.COL_QUERY_ID: ["q", "q", "r"], C.COL_PRODUCT_ID: ["b", "a", "z"]})
    condensed = R.condense(run, judgments)
    assert condensed[C.COL_PRODUCT_ID].tolist() == ["a", "b"] and condensed["score"].tolist() == [4.0, 2.0]
    qrels = pd.DataFrame({C.COL_QUERY_ID: ["q"], C.COL_PRODUCT_ID: ["b"], "gain": [2.0]})
    # the unjudged "x" above "b" costs NDCG@10 on the full list, not on the condensed one
    assert R.evaluate_run(qrels, condensed).loc["q", "ndcg@10"] > R.evaluate_run(qrels, run).loc["q", "ndcg@10"]


def test_lr_search_trains_a_fresh_model_per_rate_and_keeps_the_lowest_heldout_loss(monkeypatch):
    from ecomrec.models import retrieval as R

    trained, events = [], []
    monkeypatch.setattr(R, "train_biencoder", lambda model, data, learning_rate, **kw: trained.append((model, learning_rate))
                        or f"fit at {learning_rate:g}")
    monkeypatch.setattr(R, "add_lora", lambda model, rank: events.append(("lora", rank)) or {**model, "lora": True})
    monkeypatch.setattr(R, "merge_lora", lambda model: events.append("merge") or {**model, "merged": True})
    made = []
    load = lambda: made.append({"id": len(made)}) or made[-1]
    loss = {1e-4: 0.9, 1e-3: 0.4, 1e-2: 0.7}
    model, fit, lr, losses = R.train_with_lr_search(load, "data", (1e-4, 1e-3, 1e-2),
                                                    lambda m: loss[trained[m["id"]][1]], max_steps=3)
    assert [rate for _, rate in trained] == [1e-4, 1e-3, 1e-2] and len({m["id"] for m, _ in trained}) == 3
    assert (lr, fit, model["id"]) == (1e-3, "fit at 0.001", 1) and losses == loss
    assert events == []  # no LoRA asked for
    model, *_ = R.train_with_lr_search(load, "data", (1e-3,), lambda m: 0.0, lora_rank=8)
    assert events == [("lora", 8), "merge"] and model["lora"] and model["merged"]
    with pytest.raises(ValueError, match="empty"):
        R.train_with_lr_search(load, "data", (), lambda m: 0.0)
