import numpy as np
import pytest

from ecomrec.augment import negatives as neg
from ecomrec.models.search import BM25Index, DenseIndex


def test_uniform_never_returns_the_positive():
    rng = np.random.default_rng(0)
    positives = np.array([0, 1, 2] * 200)
    draws = neg.uniform_negatives(positives, np.arange(3), 5, rng)
    assert draws.shape == (600, 5) and not (draws == positives[:, None]).any()
    assert set(np.unique(draws)) == {0, 1, 2}


def test_popularity_frequencies_follow_count_power_alpha():
    rng = np.random.default_rng(42)
    counts = np.array([0, 1, 3, 7, 15, 31])
    alpha = 0.75
    draws = neg.popularity_negatives(np.full(40_000, -1), np.arange(6), counts, alpha, 5, rng)
    empirical = np.bincount(draws.ravel(), minlength=6) / draws.size
    expected = (counts + 1.0) ** alpha / ((counts + 1.0) ** alpha).sum()
    assert np.abs(empirical - expected).max() < 0.005  # 200,000 draws: standard error below 0.001


def test_alpha_zero_is_uniform_and_bad_input_raises():
    assert np.allclose(neg.popularity_probabilities([0, 10, 100], 0.0), 1 / 3)
    with pytest.raises(ValueError):
        neg.uniform_negatives([0], [0], 1, np.random.default_rng(0))
    with pytest.raises(ValueError):
        neg.uniform_negatives([0], [0, 1], 0, np.random.default_rng(0))


def test_bm25_hard_negatives_skip_known_positives():
    index = BM25Index([10, 11, 12, 13], ["red hammer steel", "red hammer wood", "blue hammer", "garden hose"])
    result = neg.bm25_hard_negatives(["red hammer"], [{10}], index, n=2)
    assert result == [[11, 12]]


def test_bm25_hard_negatives_never_return_products_without_a_shared_word():
    index = BM25Index([10, 11, 12, 13], ["red hammer steel", "red hammer wood", "blue hammer", "garden hose"])
    assert neg.bm25_hard_negatives(["steel"], [{10}], index, n=3) == [[]]


def test_margin_drops_likely_false_negatives():
    keep = neg.margin_filter(np.array([0.8]), np.array([[0.79, 0.75, 0.70]]), margin=0.05)
    assert keep.tolist() == [[False, True, True]]


def test_dense_hard_negatives_respect_margin_and_positives():
    def unit(v):
        v = np.asarray(v, dtype=np.float32)
        return v / np.linalg.norm(v)

    items = np.stack([unit([1, 0.0]), unit([1, 0.05]), unit([1, 0.5]), unit([1, 1.0]), unit([0, 1.0])])
    index = DenseIndex([0, 1, 2, 3, 4], items)
    query = unit([1, 0.0])[None, :]
    # positive is item 3 (cos ≈ 0.71); items 0 and 1 score higher: likely unlabelled positives, dropped
    result = neg.dense_hard_negatives(query, items[[3]], [{3}], index, n=2, margin=0.05)
    assert result == [[4]]
    result = neg.dense_hard_negatives(query, items[[0]], [{0}], index, n=2, margin=0.05)
    assert result == [[2, 3]]  # item 1 (cos 0.999) is inside the margin of the positive (cos 1.0)


def test_triplets_dataset_with_provenance():
    ds = neg.triplets(["q1", "q2"], ["p1", "p2"], ["n1", "n2"], source="real", filter_score=[0.5, 0.7])
    assert ds.column_names == ["anchor", "positive", "negative", "source", "filter_score"]
    assert ds[1] == {"anchor": "q2", "positive": "p2", "negative": "n2", "source": "real", "filter_score": 0.7}
    with pytest.raises(ValueError, match="provenance"):
        neg.triplets(["q"], ["p"], ["n"], generator=["a", "b"])


def test_samplers_are_seeded():
    counts = np.arange(50)
    draw = lambda seed: neg.popularity_negatives(np.arange(20), np.arange(50), counts, 0.75, 3, np.random.default_rng(seed))
    assert (draw(1) == draw(1)).all() and not (draw(1) == draw(2)).all()
