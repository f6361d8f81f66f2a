"""The search pipeline: BM25 + dense fusion, re-ranking on top, and the choice saved for later chapters."""

import pandas as pd
import pytest

from ecomrec.models.pipeline import FUSION_WEIGHTS, SearchPipeline, choose_fusion, fuse, fuse_lists
from ecomrec.models.retrieval import condense, is_judged, top_k


def run(scores: dict[str, float], query: str = "q") -> pd.DataFrame:
    return pd.DataFrame({"query_id": query, "product_id": list(scores), "score": list(scores.values())})


def order(frame: pd.DataFrame) -> list[str]:
    return frame.sort_values("score", ascending=False, kind="mergesort")["product_id"].tolist()


BM25 = run({"a": 9.0, "b": 5.0, "c": 1.0})
DENSE = run({"c": 0.9, "d": 0.8, "a": 0.1})


def test_fusion_ends_are_each_run_alone_over_the_union():
    assert order(fuse(BM25, DENSE, 0.0))[:3] == ["a", "b", "c"]
    assert order(fuse(BM25, DENSE, 1.0))[:3] == ["c", "d", "a"]
    assert set(fuse(BM25, DENSE, 0.5)["product_id"]) == {"a", "b", "c", "d"}
    with pytest.raises(ValueError, match="dense_weight"):
        fuse(BM25, DENSE, 1.5)


def test_fusion_weight_is_chosen_on_the_qrels_given():
    dense_wins = pd.DataFrame({"query_id": ["q"], "product_id": ["d"], "gain": [2.0]})
    bm25_wins = pd.DataFrame({"query_id": ["q"], "product_id": ["b"], "gain": [2.0]})
    assert choose_fusion(BM25, DENSE, dense_wins, FUSION_WEIGHTS).iloc[0]["dense_weight"] > 0.5
    assert choose_fusion(BM25, DENSE, bm25_wins, FUSION_WEIGHTS).iloc[0]["dense_weight"] < 0.5
    assert FUSION_WEIGHTS[0] == 0.0 and FUSION_WEIGHTS[-1] == 1.0 and len(FUSION_WEIGHTS) == 11


def test_pipeline_reranks_its_fused_top_depth_and_round_trips(tmp_path):
    pipeline = SearchPipeline(dense_weight=0.0, depth=2, rerank_weight=1.0)
    cross = run({"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.2})
    fused = pipeline.first_stage(BM25, DENSE)
    assert order(pipeline.rerank(fused, cross)) == ["b", "a"]  # BM25's top 2, ordered by the cross-encoder
    assert SearchPipeline.load(pipeline.save(tmp_path / "p.json")) == pipeline
    with pytest.raises(FileNotFoundError, match="run 04"):
        SearchPipeline.load(tmp_path / "missing.json")
    with pytest.raises(ValueError):
        SearchPipeline(dense_weight=0.5, depth=0, rerank_weight=0.5)


def test_judged_pairs_top_k_and_condensed_lists():
    judged = pd.DataFrame({"query_id": ["q", "q", "r"], "product_id": ["a", "c", "b"]})
    assert is_judged(BM25, judged).tolist() == [True, False, True]
    assert condense(BM25, judged)["product_id"].tolist() == ["a", "c"]
    both = pd.concat([run({"x": 1.0, "y": 3.0, "z": 2.0}, "q"), run({"u": 5.0, "v": 5.0}, "r")])
    top = top_k(both, 2)
    assert top.groupby("query_id")["product_id"].agg(list).to_dict() == {"q": ["y", "z"], "r": ["u", "v"]}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_query_fusion_matches_the_frame_fusion(seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    bm25_ids, dense_ids = rng.choice(40, 15, replace=False), rng.choice(40, 15, replace=False)
    bm25_scores = np.where(rng.random(15) < 0.3, -1.0, rng.random(15) * 10)
    dense_scores = rng.random(15)
    ids, scores = fuse_lists(bm25_ids, bm25_scores, dense_ids, dense_scores, 0.7)
    frame = top_k(fuse(pd.DataFrame({"query_id": "q", "product_id": bm25_ids, "score": bm25_scores}),
                       pd.DataFrame({"query_id": "q", "product_id": dense_ids, "score": dense_scores}), 0.7), 100)
    assert ids.tolist() == frame["product_id"].tolist()
    assert np.allclose(scores, frame["score"].to_numpy())
    with pytest.raises(ValueError, match="ids for"):
        fuse_lists(bm25_ids, bm25_scores[:3], dense_ids, dense_scores, 0.7)
