import numpy as np
import pandas as pd
import pytest

from ecomrec.augment.filters import REASONS, explode_generated, filter_queries, keep_rates, unfiltered
from ecomrec.models.search import BM25Index, DenseIndex, expand_documents, rank_of

TITLES = {1: "cordless drill driver kit", 2: "claw hammer steel", 3: "garden hose nozzle", 4: "interior wall paint"}


@pytest.fixture
def bm25():
    return BM25Index(list(TITLES), list(TITLES.values()))


def test_rank_of():
    retrieved = np.array([[5, 7, 9], [1, 2, 3]])
    assert rank_of(retrieved, [9, 4]).tolist() == [3, 0]
    valid = np.array([[True, True, False], [True, True, True]])
    assert rank_of(retrieved, [9, 2], valid=valid).tolist() == [0, 2]


def test_bm25_finds_word_overlap(bm25):
    ids, scores = bm25.search(["garden hose", "hammer"], k=2)
    assert ids[0, 0] == 3 and ids[1, 0] == 2 and (scores[:, 0] > 0).all()


def test_bm25_search_runs_a_kernel_numba_keeps_on_disk(bm25):
    """The kernel `search` runs (bm25s' serial one, n_threads=0) is compiled with numba's disk cache, so a later
    process loads it instead of compiling it again (bm25s itself compiles it in every process)."""
    from bm25s.numba import retrieve_utils
    from numba.core.caching import FunctionCache

    kernel = retrieve_utils._retrieve_internal_jitted_serial
    bm25.search(["garden hose"], k=2)
    assert isinstance(kernel._cache, FunctionCache) and kernel.signatures  # cached, and the one search ran


def test_bm25_scores_a_query_without_words_zero_and_matched_scores_rank_it_last(bm25):
    ids, scores = bm25.search(["1/2 in.", "garden hose", "the"], k=2)  # digits and stop words only: no BM25 word
    assert ids[1, 0] == 3 and scores[1, 0] > 0 and (scores[[0, 2]] == 0).all() and ids.shape == (3, 2)
    assert (bm25.search(["1/2 in."], k=4)[1] == 0).all()
    _, matched = bm25.search_matched(["garden hose", "1/2 in."], k=2)
    assert matched[0, 0] > 0 and matched[0, 1] == -1.0 and (matched[1] == -1.0).all()


def test_dense_index_exact_top_k():
    emb = np.eye(4, dtype=np.float32)
    index = DenseIndex(["a", "b", "c", "d"], emb)
    ids, scores = index.search(np.array([[0.1, 0.9, 0.3, 0.0]], dtype=np.float32), k=2, chunk=1)
    assert ids.tolist() == [["b", "c"]] and np.allclose(scores, [[0.9, 0.3]])
    with pytest.raises(ValueError):
        DenseIndex(["a"], emb)


def test_filter_reasons_in_order(bm25):
    generated = [["cordless drill", "cordless drill", "", "one two three four five six seven eight nine", "garden hose"]]
    candidates = explode_generated([1], [TITLES[1]], generated, "g")
    out = filter_queries(candidates, bm25, k=1)
    assert out["reason"].tolist() == ["kept", "duplicate", "empty", "too long", "failed round trip"]
    assert out["keep"].tolist() == [True, False, False, False, False]
    assert out["bm25_rank"].tolist()[0] == 1


def test_unfiltered_keeps_what_the_quality_checks_drop_but_not_empties_or_repeats(bm25):
    generated = [["cordless drill", "cordless drill", "", "  ", "one two three four five six seven eight nine", "garden hose"],
                 ["cordless drill"]]
    out = filter_queries(explode_generated([1, 2], [TITLES[1], TITLES[2]], generated, "g"), bm25, k=1)
    raw = unfiltered(out)
    assert raw["reason"].tolist() == ["kept", "too long", "failed round trip", "failed round trip"]
    assert raw[["product_id", "query"]].duplicated().sum() == 0 and len(raw) > out["keep"].sum()
    assert out[out["keep"]].index.isin(raw.index).all()  # the filter only removes


def test_a_repeated_string_is_searched_once_and_ranked_for_each_of_its_products(bm25):
    searched, search = [], bm25.search
    bm25.search = lambda queries, k=10: (searched.append(list(queries)), search(queries, k=k))[1]
    generated = [["garden hose", "hammer"], ["hammer"], ["garden hose"]]
    out = filter_queries(explode_generated([3, 2, 1], [TITLES[3], TITLES[2], TITLES[1]], generated, "g"), bm25, k=1)
    assert searched == [["garden hose", "hammer"]]
    assert out["bm25_rank"].tolist() == [1, 0, 1, 0]
    assert out["reason"].tolist() == ["kept", "failed round trip", "kept", "failed round trip"]


def test_dense_rescues_what_bm25_misses(bm25):
    class Encoder:  # "power tool" has no word in common with the drill's title, but means it
        def encode(self, texts, **kwargs):
            return np.array([[1.0, 0.0] if "power" in t else [0.0, 1.0] for t in texts], dtype=np.float32)

    dense = DenseIndex(list(TITLES), np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32))
    candidates = explode_generated([1], [TITLES[1]], [["power tool"]], "g")
    assert not filter_queries(candidates, bm25, k=1)["keep"].any()
    out = filter_queries(candidates, bm25, dense=dense, encoder=Encoder(), k=1)
    assert out["keep"].all() and out["dense_rank"].tolist() == [1] and out["bm25_rank"].tolist() == [0]
    with pytest.raises(ValueError, match="encoder"):
        filter_queries(candidates, bm25, dense=dense, k=1)
    # the same string written for two products is embedded once but ranked for each source product
    twice = explode_generated([2, 1], [TITLES[2], TITLES[1]], [["power tool"], ["power tool"]], "g")
    assert filter_queries(twice, bm25, dense=dense, encoder=Encoder(), k=1)["dense_rank"].tolist() == [0, 1]


def test_keep_rates_rows_sum_to_one(bm25):
    candidates = pd.concat([explode_generated([1, 3], [TITLES[1], TITLES[3]], [["cordless drill"], ["garden hose", "x"]], "a"),
                            explode_generated([2], [TITLES[2]], [["paint"]], "b")])
    rates = keep_rates(filter_queries(candidates, bm25, k=1))
    assert list(rates.columns) == list(REASONS)
    assert np.allclose(rates.sum(axis=1), 1.0)
    assert rates.loc["a", "kept"] == pytest.approx(2 / 3) and rates.loc["b", "kept"] == 0.0


def test_encode_chunks_and_handles_empty_input():
    from ecomrec.models.search import encode

    class Encoder:
        def encode(self, texts, **kwargs):
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float64)

        def get_embedding_dimension(self):
            return 2

    out = encode(Encoder(), ["a", "bb", "ccc"], chunk=2)
    assert out.dtype == np.float32 and out[:, 0].tolist() == [1, 2, 3]
    assert encode(Encoder(), []).shape == (0, 2)


def test_one_letter_typo():
    from ecomrec.models.behaviour import one_letter_typo

    assert one_letter_typo("cordless drill") == "cordess drill"
    assert one_letter_typo("led bulb") == "led bub"
    assert one_letter_typo("a b") == "a b"  # no word long enough
    with pytest.raises(ValueError):
        one_letter_typo("  ")


def test_plural_and_unit_rewrites():
    from ecomrec.models.behaviour import respell_units, toggle_plural

    assert toggle_plural("drill bit") == "drill bits" and toggle_plural("drill bits") == "drill bit"
    assert toggle_plural("aa batteries") == "aa battery" and toggle_plural("aa battery") == "aa batteries"
    assert toggle_plural("paint brush") == "paint brushes" and toggle_plural("glass") == "glasses"
    assert toggle_plural("pipe 3/4") == "pipe 3/4"  # a size: nothing to flip
    assert respell_units("1/2 in. pvc pipe 10 ft") == "1/2 inch pvc pipe 10 feet"
    assert respell_units("2 inch screws") == "2 in. screws"
    assert respell_units("built in oven") == "built in oven"  # "in" after a word is a preposition


def test_expand_documents_appends_each_products_texts():
    extra = pd.DataFrame({"product_id": [2, 1, 2], "query": ["b one", "a one", "b two"]})
    assert expand_documents([1, 2, 3], ["A", "B", "C"], extra) == ["A a one", "B b one b two", "C"]
    with pytest.raises(KeyError, match="query"):
        expand_documents([1], ["A"], extra.rename(columns={"query": "q"}))
    with pytest.raises(ValueError):
        expand_documents([1, 2], ["A"], extra)


def test_mean_pair_cosine_tells_collapsed_vectors_from_spread_ones():
    from ecomrec.models.search import COLLAPSED_COSINE, mean_pair_cosine

    rng = np.random.default_rng(0)
    spread = rng.normal(size=(500, 64))
    collapsed = np.ones((500, 64)) + 1e-3 * rng.normal(size=(500, 64))  # what a collapsed encoder gives
    assert abs(mean_pair_cosine(spread)) < 0.05
    assert mean_pair_cosine(collapsed) > COLLAPSED_COSINE
    assert mean_pair_cosine(np.eye(8)) == 0.0  # distinct rows only: an orthonormal basis never pairs a row with itself
    assert mean_pair_cosine(spread * 7.0) == pytest.approx(mean_pair_cosine(spread))  # cosine: scale does not matter
    for bad in (np.ones((1, 4)), np.ones(4), np.vstack([np.ones(4), np.zeros(4)])):
        with pytest.raises(ValueError):
            mean_pair_cosine(bad)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_top_k_inner_bf16_shortlist_returns_the_fp32_top_k():
    import torch

    from ecomrec.models.search import top_k_inner

    rng = np.random.default_rng(0)
    queries, catalogue = torch.from_numpy(_unit(rng.normal(size=(64, 32)))), torch.from_numpy(_unit(rng.normal(size=(3000, 32))))
    expected_scores, expected_rows = torch.topk(queries @ catalogue.T, 10, dim=1)
    scores, rows = top_k_inner(queries, catalogue, 10, bf16=True)
    np.testing.assert_allclose(scores.numpy(), expected_scores.numpy(), atol=1e-5)
    np.testing.assert_array_equal(rows.numpy(), expected_rows.numpy())  # random vectors: no ties
    deep_scores, _ = top_k_inner(queries, catalogue, 100, bf16=True)  # past SHORTLIST_MAX_K: the plain product
    np.testing.assert_allclose(deep_scores.numpy(), torch.topk(queries @ catalogue.T, 100, dim=1).values.numpy(), atol=1e-6)


def test_top_k_inner_recomputes_what_bf16_cannot_tell_apart():
    import torch

    from ecomrec.models.search import top_k_inner

    # 3,000 products whose cosine to the query lies in [0.7, 0.7001]: bf16 rounds every one of them to 0.69921875,
    # below the true score, so its shortlist of 40 is an arbitrary 40 and looks certain unless the rounding bound
    # is allowed for; only the fp32 recomputation finds the true top 10
    cosine = 0.7 + 1e-4 * np.random.default_rng(1).permutation(3000) / 3000
    catalogue = torch.from_numpy(np.stack([cosine, np.sqrt(1 - cosine ** 2), np.zeros(3000)], axis=1).astype(np.float32))
    queries = torch.tensor([[1.0, 0.0, 0.0]] * 8)
    exact = torch.topk(queries @ catalogue.T, 10, dim=1)
    coarse = torch.topk(queries.bfloat16() @ catalogue.bfloat16().T, 40, dim=1).indices
    assert not set(exact.indices[0].tolist()) <= set(coarse[0].tolist())  # the trap is real
    scores, rows = top_k_inner(queries, catalogue, 10, bf16=True)
    np.testing.assert_array_equal(np.sort(rows.numpy(), axis=1), np.sort(exact.indices.numpy(), axis=1))
    np.testing.assert_allclose(scores.numpy(), exact.values.numpy(), atol=1e-6)


def test_dense_index_search_is_exact_with_a_bf16_shortlist():
    rng = np.random.default_rng(2)
    vectors, queries = _unit(rng.normal(size=(2000, 24))), _unit(rng.normal(size=(50, 24)))
    found, scores = DenseIndex(np.arange(2000) + 7, vectors).search(queries, k=5, chunk=16)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :5] + 7
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(scores, np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :5], atol=1e-5)
