import numpy as np
import pandas as pd
import pytest

from ecomrec import metrics as M


def frames(qrels: dict, run: dict):
    q = pd.DataFrame([(qid, d, g) for qid, docs in qrels.items() for d, g in docs.items()],
                     columns=["query_id", "product_id", "relevance"])
    r = pd.DataFrame([(qid, d, s) for qid, docs in run.items() for d, s in docs.items()],
                     columns=["query_id", "product_id", "score"])
    return q, r


def test_hand_computed_case():
    # ranking: d1 (grade 0), d2 (grade 2), d3 (grade 1), d4 (unjudged); d5 (grade 3) never retrieved
    qrels, run = frames({"q": {"d1": 0, "d2": 2, "d3": 1, "d5": 3}}, {"q": {"d1": 4, "d2": 3, "d3": 2, "d4": 1}})
    row = M.per_query_metrics(qrels, run, k=3).iloc[0]
    dcg = 2 / np.log2(3) + 1 / np.log2(4)
    idcg = 3 / np.log2(2) + 2 / np.log2(3) + 1 / np.log2(4)
    assert row["ndcg"] == pytest.approx(dcg / idcg)
    assert row["recall"] == pytest.approx(2 / 3)  # d2, d3 of the relevant d2, d3, d5
    assert row["precision"] == pytest.approx(2 / 3)
    assert row["mrr"] == pytest.approx(1 / 2)
    assert row["map"] == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert row["hr"] == 1.0


def test_binary_ndcg_by_hand():
    qrels, run = frames({"q": {"d1": 0, "d2": 2, "d3": 1, "d5": 3}}, {"q": {"d1": 4, "d2": 3, "d3": 2, "d4": 1}})
    row = M.per_query_metrics(qrels, run, k=3, binary=True).iloc[0]
    assert row["ndcg"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3) + 1 / np.log2(4)))
    assert row["recall"] == pytest.approx(2 / 3)  # the other metrics do not change


def test_threshold_and_missing_queries():
    qrels, run = frames({"a": {"x": 1, "y": 3}, "b": {"z": 2}, "c": {"w": 0}}, {"a": {"x": 2, "y": 1}})
    out = M.per_query_metrics(qrels, run, k=2, threshold=2).set_index("query_id")
    assert set(out.index) == {"a", "b"}  # c has no relevant document
    assert out.loc["a", "mrr"] == 0.5 and out.loc["b", "ndcg"] == 0.0  # b was not retrieved at all


def test_ties_break_by_doc_id():
    qrels, run = frames({"q": {"b": 1}}, {"q": {"a": 1.0, "b": 1.0}})
    assert M.per_query_metrics(qrels, run, k=1).iloc[0]["hr"] == 0.0


def test_bad_input():
    qrels, run = frames({"q": {"a": 1}}, {"q": {"a": 1.0}})
    with pytest.raises(ValueError, match="k must be"):
        M.per_query_metrics(qrels, run, k=0)
    with pytest.raises(ValueError, match="run lacks"):
        M.per_query_metrics(qrels, run.drop(columns="score"))


@pytest.mark.parametrize("seed", range(3))
def test_matches_ranx_on_random_runs(seed):
    from ranx import Qrels, Run, evaluate

    rng = np.random.default_rng(seed)
    doc = M.ranx_ids(pd.Series(range(60)))  # the ids compare_with_ranx hands ranx: its numba cache then serves both
    qrels = {f"q{i}": {doc[j]: int(rng.integers(1, 4)) for j in rng.choice(60, size=rng.integers(1, 8), replace=False)}
             for i in range(40)}
    run = {f"q{i}": {doc[j]: float(s) for j, s in zip(rng.choice(60, size=20, replace=False), rng.random(20))}
           for i in range(40)}
    ours = M.per_query_metrics(*frames(qrels, run), k=10).mean(numeric_only=True)
    theirs = evaluate(Qrels(qrels), Run(run), ["ndcg@10", "recall@10", "precision@10", "mrr@10", "map@10", "hit_rate@10"])
    binary = M.per_query_metrics(*frames(qrels, run), k=10, binary=True)["ndcg"].mean()
    ones = {q: {d: 1 for d in docs} for q, docs in qrels.items()}
    assert binary == pytest.approx(evaluate(Qrels(ones), Run(run), "ndcg@10"), abs=1e-9)
    for name, key in [("ndcg", "ndcg@10"), ("recall", "recall@10"), ("precision", "precision@10"), ("mrr", "mrr@10"),
                      ("map", "map@10"), ("hr", "hit_rate@10")]:
        assert ours[name] == pytest.approx(theirs[key], abs=1e-9), name


def test_compare_with_ranx_agrees_and_catches_a_wrong_run():
    rng = np.random.default_rng(7)
    qrels = {f"q{i}": {f"d{j}": int(rng.integers(1, 4)) for j in rng.choice(60, size=rng.integers(1, 8), replace=False)}
             for i in range(30)}
    run = {f"q{i}": {f"d{j}": float(s) for j, s in zip(rng.choice(60, size=20, replace=False), rng.random(20))}
           for i in range(25)}  # five judged queries retrieve nothing: 0 in both
    qrels_frame, run_frame = frames(qrels, run)
    checks = M.compare_with_ranx(qrels_frame, run_frame, ks=(5, 10))
    assert list(checks["metric"]) == [f"{m}@{k}" for k in (5, 10) for m in ("ndcg", "recall", "precision", "mrr", "map",
                                                                             "hr", "binary ndcg")]
    assert checks["difference"].max() < 1e-9 and checks["ecomrec"].gt(0).all()
    with pytest.raises(ValueError, match="integer grades"):
        M.compare_with_ranx(qrels_frame.assign(relevance=qrels_frame["relevance"] / 3), run_frame)


def test_ranx_ids_have_one_width_and_keep_ids_apart():
    ids = M.ranx_ids(pd.Series([7, "7", 123456789012, 7, "a b"]))
    assert list(ids) == [7, "7", 123456789012, "a b"]  # distinct values, first-seen order; 7 and "7" stay apart
    assert len(set(ids.values())) == 4 and {len(v) for v in ids.values()} == {9}


def test_bootstrap_interval_contains_mean_and_shrinks():
    rng = np.random.default_rng(0)
    small, large = rng.random(50), rng.random(5_000)
    mean, low, high = M.bootstrap_ci(small, seed=1)
    assert low < mean < high
    _, low2, high2 = M.bootstrap_ci(large, seed=1)
    assert high2 - low2 < (high - low) / 5


def test_paired_bootstrap_detects_a_real_difference_only():
    rng = np.random.default_rng(0)
    a = rng.random(500)
    better = M.paired_bootstrap(a, a + 0.05 + rng.normal(0, 0.01, 500))
    same = M.paired_bootstrap(a, a + rng.normal(0, 0.01, 500))
    assert better["low"] > 0 and better["p_value"] < 0.01
    assert same["low"] < 0 < same["high"] and same["p_value"] > 0.05


def test_seed_pooled_paired_averages_seeds_before_pairing_and_reports_the_seed_range():
    rng = np.random.default_rng(1)
    reference = [rng.random(300) for _ in range(3)]
    offsets = [0.02, -0.01, 0.05]  # one seed alone could show anything from -0.01 to +0.05
    candidate = [r + o for r, o in zip(reference, offsets)]
    d = M.seed_pooled_paired(reference, candidate)
    assert d["diff"] == pytest.approx(np.mean(offsets))
    assert (d["seed_min"], d["seed_max"]) == (pytest.approx(-0.01), pytest.approx(0.05))
    by_hand = M.paired_bootstrap(np.mean(reference, axis=0), np.mean(candidate, axis=0))
    assert (d["low"], d["high"]) == (by_hand["low"], by_hand["high"])
    with pytest.raises(ValueError, match="same number"):
        M.seed_pooled_paired(reference, candidate[:2])
    with pytest.raises(ValueError, match="same number"):
        M.seed_pooled_paired([], [])


def test_beyond_accuracy():
    recs = pd.Series([["a", "b"], ["a", "c"]])
    assert M.catalog_coverage(recs, 10) == pytest.approx(0.3)
    popularity = pd.Series({"a": 8, "b": 2, "c": 1})
    assert M.popularity_bias(recs, popularity) == pytest.approx((8 + 2 + 8 + 1) / 4)
    assert M.novelty(recs, popularity, n_users=8) == pytest.approx(np.mean([0, 2, 0, 3]))
    emb = {"a": np.array([1.0, 0.0]), "b": np.array([1.0, 0.0]), "c": np.array([0.0, 1.0])}
    assert M.intra_list_diversity(recs, emb) == pytest.approx(0.5)  # lists: distance 0 and 1


def test_verdict_reads_a_paired_interval():
    assert M.verdict(0.001, 0.02) == "helped"
    assert M.verdict(-0.03, -0.0001) == "hurt"
    assert M.verdict(-0.01, 0.01) == M.verdict(0.0, 0.01) == M.verdict(-0.01, 0.0) == "made no detectable difference"
    d = M.paired_bootstrap(np.zeros(50), np.full(50, 0.1))  # b better than a on every query
    assert M.verdict(d["low"], d["high"]) == "helped"
    with pytest.raises(ValueError):
        M.verdict(0.2, 0.1)
    with pytest.raises(ValueError):
        M.verdict(float("nan"), 0.1)


def test_error_bars_are_the_interval_around_the_estimate_and_never_negative():
    bars = M.error_bars([0.30, 0.5], [0.25, 0.45], [0.40, 0.52])
    assert bars.shape == (2, 2)
    np.testing.assert_allclose(bars, [[0.05, 0.05], [0.10, 0.02]])
    # a collapsed model: mean 7e-5, percentile interval [1e-4, 2.2e-4] above it — the lower bar is 0, not negative
    collapsed = M.error_bars([7.3e-5], [1e-4], [2.2e-4])
    assert collapsed[0, 0] == 0.0 and collapsed[1, 0] == pytest.approx(2.2e-4 - 7.3e-5)
    assert np.isnan(M.error_bars([0.3], [float("nan")], [float("nan")])).all()  # no interval: no bar, kept as NaN
    values = pd.Series([0.2, 0.3])  # pandas columns, as the notebooks pass them
    np.testing.assert_allclose(M.error_bars(values, values - 0.1, values + 0.2), [[0.1, 0.1], [0.2, 0.2]])
    with pytest.raises(ValueError):
        M.error_bars([0.3, 0.4], [0.2], [0.5])
    with pytest.raises(ValueError):
        M.error_bars([0.3], [0.5], [0.2])
