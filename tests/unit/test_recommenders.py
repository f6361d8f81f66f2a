"""Recommenders on tiny interaction sets whose right answers are known."""

import numpy as np
import pandas as pd
import pytest

from ecomrec import config as C
from ecomrec.recommend import models as M
from ecomrec.recommend.sasrec import SASRec

ITEMS = ["a", "b", "c", "d", "e"]


def events(pairs):
    return pd.DataFrame([(u, i, t) for t, (u, i) in enumerate(pairs)], columns=[C.COL_USER, C.COL_ITEM, C.COL_TIMESTAMP])


# a and b always co-occur; c is the most popular item; d and e are rare
TRAIN = events([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "a"), ("u3", "b"), ("u4", "c"),
                ("u5", "c"), ("u6", "c"), ("u7", "c"), ("u4", "d"), ("u8", "a"), ("u8", "e")])


def test_popularity_orders_by_count_and_never_recommends_history():
    model = M.Popularity(ITEMS).fit(TRAIN)
    recs = model.recommend(["u8", "u4"], k=3)
    assert recs[recs[C.COL_USER] == "u4"][C.COL_ITEM].tolist() == ["a", "b", "e"]  # c and d are u4's history
    assert recs[recs[C.COL_USER] == "u8"][C.COL_ITEM].tolist()[:2] == ["c", "b"]  # c: 4 users, b: 3 users


def test_itemknn_recommends_the_co_occurring_item():
    model = M.ItemKNN(ITEMS, shrinkage=0.0).fit(TRAIN)
    assert model.recommend(["u8"], k=1)[C.COL_ITEM].tolist() == ["b"]
    # shrunk cosine by hand: |U_a ∩ U_b| = 3, |U_a| = 4, |U_b| = 3
    shrunk = M.ItemKNN(ITEMS, shrinkage=10.0).fit(TRAIN)
    assert shrunk.similarity[0, 1] == pytest.approx(3 / (np.sqrt(4 * 3) + 10))
    assert shrunk.similarity[0, 0] == 0


def test_itemknn_keeps_only_the_nearest_neighbours():
    model = M.ItemKNN(ITEMS, shrinkage=0.0, neighbours=1).fit(TRAIN)
    assert (np.asarray((model.similarity > 0).sum(axis=1)).ravel() <= 1).all()


def test_history_is_excluded_and_extra_exclusions_apply():
    model = M.Popularity(ITEMS).fit(TRAIN)
    recs = model.recommend(["u1"], k=5)
    assert not set(recs[C.COL_ITEM]) & {"a", "b"}
    assert len(recs) == 3  # only 3 unseen items exist
    recs = model.recommend(["u1"], k=5, exclude={"u1": ["c"]})
    assert recs[C.COL_ITEM].tolist() == ["d", "e"] and recs["rank"].tolist() == [1, 2]


@pytest.mark.parametrize("make", [lambda: M.Popularity(ITEMS), lambda: M.ItemKNN(ITEMS, shrinkage=0.0)])
def test_recommend_one_gives_recommend_s_list_without_a_data_frame(make):
    model = make().fit(TRAIN)
    for user in TRAIN[C.COL_USER].unique():
        for k in (1, 2, 5, 50):
            expected = model.recommend([user], k=k)
            items, scores = model.recommend_one(user, k=k)
            # same items in the same order (ties in score broken by catalogue position), history left out
            assert items.tolist() == expected[C.COL_ITEM].tolist(), (user, k)
            np.testing.assert_allclose(scores, expected["score"].to_numpy())
    items, scores = M.Popularity(ITEMS).fit(TRAIN).recommend_one("u3", k=5)  # u3 has seen a and b
    assert items.tolist() == ["c", "d", "e"] and scores.tolist() == [4, 1, 1]  # d, e tied: catalogue order
    with pytest.raises(KeyError, match="unknown user"):
        model.recommend_one("nobody")
    with pytest.raises(ValueError, match="positive"):
        model.recommend_one("u1", k=0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="outside the catalogue"):
        M.Popularity(ITEMS).fit(events([("u1", "zz")]))
    with pytest.raises(KeyError):
        M.Popularity(ITEMS).fit(TRAIN).recommend(["nobody"])
    with pytest.raises(ValueError):
        M.Popularity(["a", "a"])


def test_fusion_arithmetic():
    pop, knn = M.Popularity(ITEMS).fit(TRAIN), M.ItemKNN(ITEMS, shrinkage=0.0).fit(TRAIN)
    fused = M.WeightedFusion([pop, knn], [0.3, 0.7]).fit(TRAIN)
    seen = np.isin(ITEMS, ["a", "e"])
    expected = 0.3 * M.minmax_per_row(np.where(seen, -np.inf, pop.scores(["u8"]))) + \
        0.7 * M.minmax_per_row(np.where(seen, -np.inf, knn.scores(["u8"])))
    assert np.allclose(fused.scores(["u8"]), expected)
    rrf = M.RRFusion([pop, knn], k=60).fit(TRAIN)
    ranks_pop = M.ranks_per_row(np.where(seen, -np.inf, pop.scores(["u8"])))
    ranks_knn = M.ranks_per_row(np.where(seen, -np.inf, knn.scores(["u8"])))
    assert np.allclose(rrf.scores(["u8"]), 1 / (60 + ranks_pop) + 1 / (60 + ranks_knn))
    with pytest.raises(ValueError):
        M.WeightedFusion([pop, knn], [0.0, 0.0])


def test_minmax_and_ranks():
    scores = np.array([[3.0, 1.0, -np.inf, 2.0]])
    assert np.allclose(M.minmax_per_row(scores)[0, [0, 1, 3]], [1.0, 0.0, 0.5])
    assert M.ranks_per_row(scores).tolist() == [[1, 3, 4, 2]]


def test_content_profile_weights_recent_items_more():
    emb = np.eye(5)
    model = M.ContentBased(ITEMS, emb, decay=0.5).fit(events([("u1", "a"), ("u1", "b")]))
    profile = model.profiles[0]
    assert profile[1] == pytest.approx(2 * profile[0])  # b is the latest: weight 1 against 0.5


def test_matrix_factorisation_learns_the_co_occurrence():
    for algorithm in ("als", "bpr"):
        model = M.ImplicitMF(ITEMS, algorithm=algorithm, factors=4, iterations=200, regularization=0.01,
                             learning_rate=0.05).fit(TRAIN)
        scores = model.scores(["u8"])[0]
        assert scores[1] > scores[3], algorithm  # b (co-occurs with u8's a) above d
    with pytest.raises(ValueError):
        M.ImplicitMF(ITEMS, algorithm="svd")


def test_sasrec_loss_falls_and_learns_a_fixed_order():
    chain = [("u%d" % u, item) for u in range(30) for item in ["a", "b", "c", "d"]]
    model = SASRec(ITEMS, hidden=16, layers=1, heads=1, max_len=8, dropout=0.0, epochs=30, batch_size=8,
                   learning_rate=5e-3).fit(events(chain))
    assert model.history["loss"].iloc[-1] < model.history["loss"].iloc[0] / 2
    assert model.scores(["u0"], histories={"u0": ["a", "b"]})[0].argmax() == ITEMS.index("c")
    again = SASRec(ITEMS, hidden=16, layers=1, heads=1, max_len=8, dropout=0.0, epochs=30, batch_size=8,
                   learning_rate=5e-3).fit(events(chain))
    assert np.allclose(model.history["loss"], again.history["loss"])  # same seed, same run


def test_sasrec_takes_masked_augmented_sequences():
    model = SASRec(ITEMS, hidden=8, layers=1, heads=1, max_len=4, epochs=1, batch_size=4)
    model.fit(events([("u1", "a"), ("u1", "b"), ("u1", "c")]), extra_sequences=[["a", "[MASK]", "c"], ["b", "c"]])
    assert np.isfinite(model.scores(["u1"])).all()


def test_candidate_features_and_learned_fusion():
    from ecomrec.recommend.fusion import LearnedFusion, candidate_features

    pop, knn = M.Popularity(ITEMS).fit(TRAIN), M.ItemKNN(ITEMS, shrinkage=0.0).fit(TRAIN)
    users = ["u1", "u4", "u8"]
    features = candidate_features({"pop": pop, "knn": knn}, users, depth=2, exclude={"u8": ["c"]})
    assert set(features.columns) >= {"pop_score", "pop_rank", "knn_score", "knn_rank", "popularity", "history_length"}
    assert not ((features[C.COL_USER] == "u8") & features[C.COL_ITEM].isin(["a", "e", "c"])).any()
    assert not ((features[C.COL_USER] == "u1") & features[C.COL_ITEM].isin(["a", "b"])).any()
    # training history only (a, e): an excluded item must not shift the feature between valid and test
    assert features.loc[features[C.COL_USER] == "u8", "history_length"].unique().tolist() == [2]
    plain = candidate_features({"pop": pop, "knn": knn}, users, depth=2)
    assert plain.groupby(C.COL_USER)["history_length"].first().equals(features.groupby(C.COL_USER)["history_length"].first())
    # the target is always the knn favourite: the ranker must learn to follow knn
    targets = {u: knn.recommend([u], k=1)[C.COL_ITEM].iloc[0] for u in users}
    ranker = LearnedFusion(max_iter=20).fit(features, targets)
    recs = ranker.recommend(features, k=1)
    assert len(recs) == 3 and recs["rank"].eq(1).all()
    with pytest.raises(ValueError):
        LearnedFusion().fit(features, {u: "nothing" for u in users})


def test_target_ranks_and_metrics_by_hand():
    from ecomrec.recommend.evaluate import rank_metrics, ranks_from_lists, target_ranks

    pop = M.Popularity(ITEMS).fit(TRAIN)
    # u8 saw a, e; remaining by popularity: c (4), b (3), d (1)
    ranks = target_ranks(pop, ["u8"], {"u8": "b"})
    assert ranks.tolist() == [2]
    assert target_ranks(pop, ["u8"], {"u8": "b"}, exclude={"u8": ["c"]}).tolist() == [1]
    with pytest.raises(ValueError):
        target_ranks(pop, ["u8"], {"u8": "a"})  # in the history
    metrics = rank_metrics(pd.Series([1, 2, 15, np.inf]), k=10, recall_k=20)
    assert metrics["hr@10"].tolist() == [1, 1, 0, 0]
    assert metrics["ndcg@10"].tolist() == pytest.approx([1.0, 1 / np.log2(3), 0, 0])
    assert metrics["mrr"].tolist() == pytest.approx([1, 0.5, 1 / 15, 0])
    assert metrics["recall@20"].tolist() == [1, 1, 1, 0]
    lists = pd.DataFrame({C.COL_USER: ["x", "x", "y"], C.COL_ITEM: ["a", "b", "c"], "rank": [1, 2, 1]})
    assert ranks_from_lists(lists, {"x": "b", "y": "a"}).tolist() == [2, np.inf]


def test_ties_count_against_the_target():
    from ecomrec.recommend.evaluate import target_ranks

    class Flat(M.Recommender):
        def scores(self, users):
            return np.zeros((len(users), len(self.items)))

    flat = Flat(ITEMS).fit(TRAIN)
    assert target_ranks(flat, ["u8"], {"u8": "b"}).tolist() == [3]  # b, c, d all tie: the worst place


def test_sasrec_padding_length_does_not_change_outputs_and_buckets_cover_every_sequence():
    import torch

    model = SASRec(ITEMS, hidden=8, heads=1, layers=1, max_len=6, dropout=0.0, epochs=1, batch_size=2).fit(TRAIN)
    model.net.eval()
    short = torch.tensor([[1, 2, 3]])
    padded = torch.tensor([[1, 2, 3, 0, 0, 0]])
    assert torch.allclose(model.net(short)[0], model.net(padded)[0, :3], atol=1e-6)
    lengths = np.array([2, 7, 3, 3, 5, 2, 4])
    batches = model._length_bucketed_batches(lengths, np.random.default_rng(0), pool=2)
    assert sorted(np.concatenate(batches).tolist()) == list(range(7)) and all(len(b) <= 2 for b in batches)
