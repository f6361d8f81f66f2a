"""The data-efficiency curve's parts: nested subsets, the writer rule, the fast NDCG scorer, the adapter trainer."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ecomrec import config as C
from ecomrec.metrics import per_query_metrics
from ecomrec.models.efficiency import NdcgScorer, nested_subsets, train_adapters, upper_bound


def test_nested_subsets_are_nested_seeded_and_checked():
    ids = np.repeat(np.arange(500) * 7, 3)  # repeated ids: subsets are of distinct ids
    subsets = nested_subsets(ids, [300, 0, 100, None], seed=3)
    assert list(subsets) == [0, 100, 300, 500]
    for small, large in zip(list(subsets.values()), list(subsets.values())[1:]):
        assert set(small) <= set(large) and len(set(large)) == len(large)
    assert set(subsets[500]) == set(ids)
    again = nested_subsets(ids[::-1], [100], seed=3)  # the order of the input does not matter, only the ids
    assert np.array_equal(again[100], subsets[100])
    assert not np.array_equal(nested_subsets(ids, [100], seed=4)[100], subsets[100])
    with pytest.raises(ValueError, match="outside"):
        nested_subsets(ids, [501])
    with pytest.raises(ValueError, match="outside"):
        nested_subsets(ids, [-1])


def test_upper_bound_marks_writers_that_saw_more_than_the_row():
    assert not upper_bound(None, 0)  # a writer that saw no real query respects every N
    assert not upper_bound(100, 100) and not upper_bound(100, 300)
    assert upper_bound(8_000, 1_000)


def random_case(seed: int, n_queries: int = 30, n_products: int = 200, dim: int = 8):
    rng = np.random.default_rng(seed)
    query_ids, product_ids = np.arange(n_queries) + 1000, rng.permutation(n_products) + 5
    rows = [(q, p, float(rng.choice([0.0, 0.33, 1.0, 2.0]))) for q in query_ids
            for p in rng.choice(product_ids, 6, replace=False)]
    qrels = pd.DataFrame(rows, columns=[C.COL_QUERY_ID, C.COL_PRODUCT_ID, "gain"])
    qrels.loc[qrels.groupby(C.COL_QUERY_ID).head(1).index, "gain"] = 2.0  # every query has a relevant product
    return query_ids, product_ids, qrels, rng.normal(size=(n_queries, dim)), rng.normal(size=(n_products, dim))


def test_ndcg_scorer_equals_the_metrics_module_on_random_runs():
    for seed in range(3):
        query_ids, product_ids, qrels, queries, catalogue = random_case(seed)
        fast = NdcgScorer(query_ids, product_ids, qrels)(queries, catalogue)
        scores = queries @ catalogue.T
        top = np.argsort(-scores, axis=1)[:, :10]
        run = pd.DataFrame({C.COL_QUERY_ID: np.repeat(query_ids, 10), C.COL_PRODUCT_ID: product_ids[top].ravel(),
                            "score": np.take_along_axis(scores, top, axis=1).ravel()})
        slow = per_query_metrics(qrels, run, k=10, grade="gain").set_index(C.COL_QUERY_ID)["ndcg"]
        assert np.allclose(fast, slow.loc[query_ids].to_numpy())


def test_ndcg_scorer_refuses_bad_input():
    query_ids, product_ids, qrels, queries, catalogue = random_case(0)
    scorer = NdcgScorer(query_ids, product_ids, qrels)
    with pytest.raises(ValueError, match="expected"):
        scorer(queries[:-1], catalogue)
    with pytest.raises(ValueError, match="no relevant judgment"):
        NdcgScorer(np.append(query_ids, 1), product_ids, qrels)


def test_adapters_start_at_the_fixed_vectors_and_learn_a_planted_task():
    rng = np.random.default_rng(0)
    n_products, dim = 300, 16
    catalogue = rng.normal(size=(n_products, dim)).astype(np.float32)
    secret = rng.normal(size=(dim, dim)).astype(np.float32)  # queries are a fixed linear mix of their product
    targets = rng.integers(0, n_products, 400)
    queries = catalogue[targets] @ secret + 0.1 * rng.normal(size=(400, dim)).astype(np.float32)
    catalogue /= np.linalg.norm(catalogue, axis=1, keepdims=True)  # unit vectors, as sentence embeddings are
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    train, valid = np.arange(300), np.arange(300, 400)
    valid_qrels = pd.DataFrame({C.COL_QUERY_ID: valid, C.COL_PRODUCT_ID: targets[valid], "gain": 2.0})
    scorer = NdcgScorer(valid, np.arange(n_products), valid_qrels)
    zero_shot = float(scorer(queries[valid], catalogue).mean())
    fit = train_adapters(queries, train, targets[train], catalogue,
                         lambda f: float(scorer(f.queries(queries[valid]), f.catalogue(catalogue)).mean()),
                         hidden=64, doc_map_rank=8, batch_size=64, learning_rate=3e-3, negatives=100, patience=4,
                         max_epochs=60)
    assert fit.history["valid"].iloc[0] == pytest.approx(zero_shot)  # step 0: the maps start as the identity
    assert fit.best_valid > zero_shot + 0.3
    assert float(scorer(fit.queries(queries[valid]), fit.catalogue(catalogue)).mean()) == pytest.approx(fit.best_valid)
    autocast = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: autocast.append(torch.is_autocast_enabled("cpu")) if isinstance(module, torch.nn.Linear) else None)
    try:  # mixed precision: the forward under bf16 autocast, and it learns the same task
        mixed = train_adapters(queries, train, targets[train], catalogue,
                               lambda f: float(scorer(f.queries(queries[valid]), f.catalogue(catalogue)).mean()),
                               hidden=64, doc_map_rank=8, batch_size=64, learning_rate=3e-3, negatives=100, patience=4,
                               max_epochs=60, bf16=True)
    finally:
        hook.remove()
    assert True in autocast and mixed.best_valid > zero_shot + 0.3
    assert next(mixed.query_map.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="outside"):
        train_adapters(queries, [0, 1], [0, n_products], catalogue, lambda f: 0.0)
    with pytest.raises(ValueError, match="hard negatives"):
        train_adapters(queries, train, targets[train], catalogue, lambda f: 0.0, hard=catalogue[:5])


def test_in_batch_and_hard_negatives_train_and_step_zero_is_untouched():
    rng = np.random.default_rng(1)
    catalogue = rng.normal(size=(50, 8)).astype(np.float32)
    targets = rng.integers(0, 50, 64)
    queries = catalogue[targets] + 0.3 * rng.normal(size=(64, 8)).astype(np.float32)
    calls = []

    def falling(fit) -> float:  # each evaluation scores worse than the one before
        calls.append(fit)
        return -float(len(calls))

    fit = train_adapters(queries, np.arange(64), targets, catalogue, falling,
                         hidden=8, doc_map_rank=2, batch_size=16, negatives=0, hard=catalogue[(targets + 1) % 50],
                         eval_every=1, patience=2, max_epochs=5)
    assert fit.best_step == 0 and fit.stopped == "converged (patience)" and len(calls) == 3  # a falling score: step 0 kept
    assert np.allclose(fit.queries(queries), queries / np.linalg.norm(queries, axis=1, keepdims=True), atol=1e-6)


def test_run_curve_adds_synthetic_pairs_to_the_same_real_subset_and_tables_paired_deltas():
    from ecomrec.models.efficiency import Source, curve_table, run_curve

    rng = np.random.default_rng(2)
    catalogue = rng.normal(size=(40, 6)).astype(np.float32)
    query_ids = np.arange(30) + 500
    real_rows, real_products = np.repeat(np.arange(30), 2), rng.integers(0, 40, 60)
    real_vectors = rng.normal(size=(30, 6)).astype(np.float32)
    sources = {"writer": Source(rng.normal(size=(12, 6)).astype(np.float32), rng.integers(0, 40, 12), writer_saw=30),
               "templates": Source(rng.normal(size=(9, 6)).astype(np.float32), rng.integers(0, 40, 9), writer_saw=None)}
    made = []

    def score_test(fit):  # every point gets its own constant score, so the table's Δ can be checked by hand
        made.append(fit)
        return np.full(5, float(len(made)))

    scores, fits = run_curve(real_vectors, query_ids, (real_rows, real_products), sources, catalogue, [0, 10, None],
                             seeds=[1, 2], synthetic_pairs=8, score_valid=lambda f: 0.0, score_test=score_test,
                             zero_shot_test=np.zeros(5), hidden=4, doc_map_rank=2, batch_size=4, negatives=5,
                             eval_every=1, patience=1, max_epochs=1)
    assert set(scores) == {("real only", 0, 1), ("real only", 0, 2)} | set(fits)
    assert {(n, s) for _, n, s in fits} == {(0, 1), (10, 1), (30, 1), (0, 2), (10, 2)}  # N = all with the first seed only
    assert ("real only", 0, 1) not in fits and np.array_equal(scores[("real only", 0, 1)], np.zeros(5))
    table = curve_table(scores, sources, fits).set_index(["row", "N"])
    assert table.loc[("templates", 10), "seeds"] == 2 and table.loc[("templates", 30), "seeds"] == 1
    budget = {key: fit.stopped != "converged (patience)" for key, fit in fits.items()}
    assert table.loc[("templates", 10), "budget stops"] == budget[("templates", 10, 1)] + budget[("templates", 10, 2)]
    assert table.loc[("real only", 0), "budget stops"] == 0  # zero-shot: nothing trained
    assert table.loc[("writer", 10), "upper bound"] and not table.loc[("writer", 30), "upper bound"]
    assert not table.loc[("templates", 0), "upper bound"] and np.isnan(table.loc[("real only", 10), "Δ"])
    expected = np.mean([scores[("writer", 10, s)][0] - scores[("real only", 10, s)][0] for s in (1, 2)])
    assert table.loc[("writer", 10), "Δ"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="fewer than 10 pairs"):
        run_curve(real_vectors, query_ids, (real_rows, real_products), sources, catalogue, [0], [1], 10,
                  lambda f: 0.0, score_test, np.zeros(5))


def test_run_curve_trains_a_row_named_in_up_to_only_up_to_its_size_and_pairs_it_with_another_row():
    from ecomrec.models.efficiency import Source, curve_table, run_curve

    rng = np.random.default_rng(4)
    catalogue = rng.normal(size=(40, 6)).astype(np.float32)
    query_ids, real_vectors = np.arange(30) + 500, rng.normal(size=(30, 6)).astype(np.float32)
    real_pairs = (np.arange(30), rng.integers(0, 40, 30))
    sources = {name: Source(rng.normal(size=(12, 6)).astype(np.float32), rng.integers(0, 40, 12), writer_saw=30)
               for name in ("filtered", "unfiltered")}
    kwargs = dict(seeds=[1, 2], synthetic_pairs=8, score_valid=lambda f: 0.0, score_test=lambda f: rng.normal(size=5),
                  zero_shot_test=np.zeros(5), hidden=4, doc_map_rank=2, batch_size=4, negatives=5, eval_every=1,
                  patience=1, max_epochs=1)
    scores, fits = run_curve(real_vectors, query_ids, real_pairs, sources, catalogue, [0, 10, 20, None],
                             up_to={"unfiltered": 10}, **kwargs)
    assert {n for name, n, _ in fits if name == "unfiltered"} == {0, 10}
    assert {n for name, n, _ in fits if name == "filtered"} == {0, 10, 20, 30}
    versus = curve_table({k: v for k, v in scores.items() if k[0] != "real only"}, sources, fits,
                         reference="unfiltered").set_index(["row", "N"])
    assert set(versus.dropna(subset=["Δ"]).index) == {("filtered", 0), ("filtered", 10)}  # paired only where both ran
    expected = np.mean([scores[("filtered", 10, s)] - scores[("unfiltered", 10, s)] for s in (1, 2)])
    assert versus.loc[("filtered", 10), "Δ"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="not sources"):
        run_curve(real_vectors, query_ids, real_pairs, sources, catalogue, [0], up_to={"typo": 10}, **kwargs)


def test_a_per_seed_source_trains_each_seed_on_its_own_pairs(monkeypatch):
    from ecomrec.models import efficiency as E

    rng = np.random.default_rng(3)
    catalogue = rng.normal(size=(40, 6)).astype(np.float32)
    query_ids = np.arange(20) + 100
    real_rows, real_products = np.arange(20), rng.integers(0, 10, 20)  # real pairs: products 0-9
    real_vectors = rng.normal(size=(20, 6)).astype(np.float32)
    per_seed = {seed: E.Source(rng.normal(size=(6, 6)).astype(np.float32), np.full(6, 10 * seed + 10), writer_saw=5)
                for seed in (1, 2)}  # seed 1 writes about product 20, seed 2 about product 30
    seen = []
    real_train = E.train_adapters

    def spy(vectors, rows, products, *args, seed, **kwargs):
        seen.append((seed, vectors, rows, products))
        return real_train(vectors, rows, products, *args, seed=seed, **kwargs)

    monkeypatch.setattr(E, "train_adapters", spy)
    scores, fits = E.run_curve(real_vectors, query_ids, (real_rows, real_products), {"few-shot": per_seed}, catalogue,
                               [0, 10], seeds=[1, 2], synthetic_pairs=4, score_valid=lambda f: 0.0,
                               score_test=lambda f: np.zeros(3), zero_shot_test=np.zeros(3), hidden=4, doc_map_rank=2,
                               batch_size=4, negatives=5, eval_every=1, patience=1, max_epochs=1)
    for seed, vectors, rows, products in seen:
        synthetic = rows >= len(real_vectors)
        if not synthetic.any():
            continue  # a real-only point
        assert set(products[synthetic]) == {10 * seed + 10}, seed
        assert np.array_equal(vectors[rows[synthetic]], per_seed[seed].vectors[rows[synthetic] - len(real_vectors)])
    assert {seed for seed, _, rows, _ in seen if (rows >= 20).any()} == {1, 2}
    table = E.curve_table(scores, {"few-shot": per_seed}, fits).set_index(["row", "N"])
    assert table.loc[("few-shot", 0), "upper bound"] and not table.loc[("few-shot", 10), "upper bound"]
    with pytest.raises(ValueError, match="no pairs for seed 3"):
        E.run_curve(real_vectors, query_ids, (real_rows, real_products), {"few-shot": per_seed}, catalogue, [0], [3], 4,
                    lambda f: 0.0, lambda f: np.zeros(3), np.zeros(3))
    mixed = {1: per_seed[1], 2: E.Source(per_seed[2].vectors, per_seed[2].product_rows, writer_saw=None)}
    with pytest.raises(ValueError, match="same number of real queries"):
        E.run_curve(real_vectors, query_ids, (real_rows, real_products), {"few-shot": mixed}, catalogue, [0], [1, 2], 4,
                    lambda f: 0.0, lambda f: np.zeros(3), np.zeros(3))


def test_writer_examples_come_from_the_rows_subset_only():
    from ecomrec import config as C
    from ecomrec.models.efficiency import nested_subsets, upper_bound, writer_examples

    ids = np.arange(60) + 1_000
    pairs = pd.DataFrame({C.COL_QUERY_ID: np.repeat(ids, 2), C.COL_QUERY: [f"query {q}" for q in np.repeat(ids, 2)],
                          C.COL_TITLE: [f"title {i}" for i in range(120)]})
    for seed in (0, 1, 2):
        subsets = nested_subsets(ids, [10, 30, None], seed)
        examples = writer_examples(pairs, subsets[10], k=3, seed=seed)
        used = {int(query.split()[1]) for _, query in examples}
        assert len(examples) == 3 and used <= set(subsets[10])
        for n, subset in subsets.items():  # nested: every larger row's subset holds them too
            assert used <= set(subset) and not upper_bound(len(subsets[10]), n)
        assert upper_bound(len(subsets[10]), 0) and upper_bound(len(subsets[10]), 9)
        assert writer_examples(pairs, subsets[10], k=3, seed=seed) == examples  # seeded
    with pytest.raises(ValueError, match="no training pair"):
        writer_examples(pairs, [1, 2, 3], k=3, seed=0)


def test_record_curve_records_each_finite_value_under_every_key_a_row_names(tmp_path, monkeypatch):
    from ecomrec import reporting
    from ecomrec.models.efficiency import record_curve

    monkeypatch.setattr(reporting, "_current", None)
    path = reporting.start("06_evaluation", tmp_path)
    table = pd.DataFrame([
        {"row": "real only", "N": 10, "seeds": 2, "NDCG@10": 0.5, "low": 0.4, "high": 0.6, "upper bound": False},
        {"row": "writer", "N": 10, "seeds": 2, "NDCG@10": 0.55, "low": 0.45, "high": 0.65, "upper bound": True,
         "Δ": 0.05, "Δ low": -0.01, "Δ high": 0.11, "Δ seed min": 0.02, "Δ seed max": 0.08}])
    table.loc[0, ["Δ", "Δ low"]] = np.nan  # the reference row has no Δ
    keys = lambda r: [f"{r['row'].replace(' ', '_')}_N_{r['N']}"] + (["writer_all"] if r["row"] == "writer" else [])
    assert record_curve(table, keys) == 5 + 10 + 10
    metrics = json.loads(path.read_text())
    assert metrics["curve/test/writer_all/ndcg@10_delta_ci_low"] == -0.01
    assert metrics["curve/test/writer_N_10/upper_bound"] == 1.0
    assert "curve/test/real_only_N_10/ndcg@10_delta" not in metrics
    assert record_curve(table.tail(1), keys, metrics=("ndcg@10_delta",)) == 2
    with pytest.raises(ValueError, match="not curve metrics"):
        record_curve(table, keys, metrics=("ndcg@5",))


def test_verdict_line_groups_a_rows_points_by_the_verdict_of_their_paired_interval():
    from ecomrec.models.efficiency import verdict_line

    table = pd.DataFrame({"row": ["writer"] * 3 + ["real only"], "N": [0, 100, 1000, 100],
                          "Δ": [0.03, 0.001, -0.02, np.nan], "Δ low": [0.01, -0.004, -0.03, np.nan],
                          "Δ high": [0.05, 0.006, -0.01, np.nan], "upper bound": [False, False, True, False]})
    assert verdict_line(table, "writer") == ("helped at N = 0 (+0.030); made no detectable difference at N = 100 (+0.001); "
                                             "hurt at N = 1,000 (-0.020, upper bound)")
    assert verdict_line(table, "real only") == "no point compared"
