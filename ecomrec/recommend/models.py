"""Recommenders with one interface: `fit(events)` then `scores(users)` / `recommend(users, k)`.

`events` are (user_id, item_id, timestamp) rows in time order. Every model scores the *whole* item
catalogue it was given; `recommend` removes each user's training history before ranking.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ecomrec import config as C


class Recommender:
    """Shared bookkeeping: id ↔ index maps, the user × item training matrix, top-k with history removed."""

    name = "recommender"

    def __init__(self, items: Sequence):
        self.items = np.asarray(items)
        if len(set(self.items.tolist())) != len(self.items):
            raise ValueError("item ids must be unique")
        self.item_index = pd.Series(np.arange(len(self.items)), index=self.items)

    def _check_events(self, events: pd.DataFrame) -> None:
        """ValueError unless `events` has user and item columns and names only catalogue items."""
        missing = [c for c in (C.COL_USER, C.COL_ITEM) if c not in events.columns]
        if missing:
            raise ValueError(f"events lack columns {missing}")
        unknown = ~events[C.COL_ITEM].isin(self.item_index.index)
        if unknown.any():
            raise ValueError(f"{int(unknown.sum())} events name items outside the catalogue, e.g. "
                             f"{events.loc[unknown, C.COL_ITEM].iloc[0]!r}")

    def _prepare(self, events: pd.DataFrame) -> None:
        self._check_events(events)
        self.users = np.sort(events[C.COL_USER].unique())
        self.user_index = pd.Series(np.arange(len(self.users)), index=self.users)
        rows = self.user_index[events[C.COL_USER]].to_numpy()
        cols = self.item_index[events[C.COL_ITEM]].to_numpy()
        matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                               shape=(len(self.users), len(self.items)))
        matrix.data[:] = 1.0  # repeated (user, item) events count once
        self.user_items = matrix
        self.histories = events.groupby(C.COL_USER, sort=True)[C.COL_ITEM].agg(list)

    def fit(self, events: pd.DataFrame) -> "Recommender":
        self._prepare(events)
        return self

    def _append(self, events: pd.DataFrame) -> list[tuple[int, int]]:
        """Add new interactions (new users allowed, items must be in the catalogue) to the training
        matrix and histories; returns the (row, column) cells that were not already set."""
        self._check_events(events)
        new_users = pd.Index(events[C.COL_USER].unique()).difference(self.user_index.index)
        if len(new_users):
            self.users = np.concatenate([self.users, new_users.to_numpy()])
            self.user_index = pd.Series(np.arange(len(self.users)), index=self.users)
            self.user_items = sp.vstack([self.user_items, sp.csr_matrix((len(new_users), len(self.items)),
                                                                        dtype=np.float32)]).tocsr()
        matrix = self.user_items.tolil()
        added = []
        for user, item in zip(events[C.COL_USER], events[C.COL_ITEM]):
            row, col = int(self.user_index[user]), int(self.item_index[item])
            if matrix[row, col] == 0:
                matrix[row, col] = 1.0
                added.append((row, col))
        self.user_items = matrix.tocsr()
        self.histories = pd.concat([self.histories, events.groupby(C.COL_USER, sort=False)[C.COL_ITEM].agg(list)])
        self.histories = self.histories.groupby(level=0).agg(lambda lists: [i for items in lists for i in items])
        return added

    def fold_in(self, events: pd.DataFrame) -> "Recommender":
        """A copy of this model whose users' histories also hold `events` (e.g. each user's validation
        interaction, when scoring for test under the field's leave-one-out), with every learnt parameter
        kept: the new items shape the user's scores and are never recommended back. Models whose scores
        do not read the history matrix override it (content profiles, matrix factorisation)."""
        model = copy.copy(self)  # `_append` reassigns, never mutates, the shared matrix and histories
        model._append(events)
        return model

    def _item_matrix(self, extra: pd.DataFrame | None) -> sp.csr_matrix:
        """The training matrix, plus the cells of `extra` events (training users only) when given: events
        that teach an item-item model without entering any user's history (e.g. `02`'s synthetic
        cold-item interactions)."""
        if extra is None or not len(extra):
            return self.user_items
        self._check_events(extra)
        rows = self.user_index.index.get_indexer(pd.Index(extra[C.COL_USER]))
        if (rows < 0).any():
            raise ValueError(f"{int((rows < 0).sum())} extra events name users outside the training events")
        cols = self.item_index[extra[C.COL_ITEM]].to_numpy()
        added = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=self.user_items.shape)
        matrix = (self.user_items + added).tocsr()
        matrix.data[:] = 1.0
        return matrix

    def scores(self, users: Sequence) -> np.ndarray:  # pragma: no cover - every model overrides it
        raise NotImplementedError

    def _rows(self, users: Sequence) -> np.ndarray:
        # a hash lookup: `Index.isin` on pandas 3's Arrow strings loops in Python over every known user
        # (70 ms for 4,905 users, holding the GIL — it made the API's /recommend take seconds under load)
        users = pd.Index(users)
        rows = self.user_index.index.get_indexer(users)
        unknown = rows < 0
        if unknown.any():
            raise KeyError(f"{int(unknown.sum())} users were not in the training events, e.g. {users[unknown][0]!r}")
        return self.user_index.to_numpy()[rows]

    def blocked(self, users: Sequence, exclude: dict | None = None) -> np.ndarray:
        """Boolean users × items: each user's training items, and the items of `exclude[user]`."""
        mask = self.user_items[self._rows(users)].toarray() > 0
        if exclude:
            for row, user in enumerate(users):
                mask[row, [self.item_index[i] for i in exclude.get(user, ()) if i in self.item_index.index]] = True
        return mask

    def masked_scores(self, users: Sequence, exclude: dict | None = None) -> np.ndarray:
        """`scores(users)` as float64 with the `blocked` items set to −inf (never ranked, never a candidate)."""
        scores = np.array(self.scores(users), dtype=np.float64, copy=True)
        scores[self.blocked(users, exclude)] = -np.inf
        return scores

    def recommend(self, users: Sequence, k: int = 10, exclude: dict | None = None, batch: int = 1024) -> pd.DataFrame:
        """Top-k items per user, best first, never an item of the user's training history (nor of
        `exclude[user]`, e.g. the validation item when recommending for test); fewer than k when fewer
        items are left."""
        if k < 1:
            raise ValueError("k must be positive")
        users = list(users)
        out = []
        for start in range(0, len(users), batch):
            chunk = users[start:start + batch]
            top, top_scores = _top_k(self.masked_scores(chunk, exclude), k)
            kk = top.shape[1]
            out.append(pd.DataFrame({C.COL_USER: np.repeat(chunk, kk), C.COL_ITEM: self.items[top.ravel()],
                                     "score": top_scores.ravel(), "rank": np.tile(np.arange(1, kk + 1), len(chunk))}))
        recs = pd.concat(out, ignore_index=True)
        return recs[np.isfinite(recs["score"])].reset_index(drop=True)  # excluded items never come back

    def recommend_one(self, user, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """`recommend([user], k)` as two arrays (item ids, scores), same items in the same order, without
        building a DataFrame: the served API's path, where pandas' per-call overhead, not the scoring,
        was most of a recommendation's time. KeyError for an unknown user."""
        if k < 1:
            raise ValueError("k must be positive")
        if user not in self.user_index.index:
            raise KeyError(f"unknown {C.COL_USER} {user!r}")
        top, scores = _top_k(self.masked_scores([user]), k)
        keep = np.isfinite(scores[0])  # excluded items never come back
        return self.items[top[0][keep]], scores[0][keep]


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of users × items `scores`: the columns of the k highest, best first (ties by column), and
    their scores."""
    kk = min(k, scores.shape[1])
    top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


class Popularity(Recommender):
    """Score = number of training users who interacted with the item (the same list for everyone)."""

    name = "popularity"

    def fit(self, events: pd.DataFrame) -> "Popularity":
        self._prepare(events)
        self.counts = np.asarray(self.user_items.sum(axis=0)).ravel()
        return self

    def scores(self, users: Sequence) -> np.ndarray:
        self._rows(users)
        return np.tile(self.counts, (len(users), 1))

    def update(self, events: pd.DataFrame) -> "Popularity":
        """Online update: count the new (user, item) pairs without re-reading the old events."""
        for _, col in self._append(events):
            self.counts[col] += 1
        return self


class RecBolePopularity(Popularity):
    """Popularity counted the way RecBole 1.2.1's `Pop` counts it, to show why its published figure differs.

    RecBole trains `Pop` for one epoch over shuffled batches of `batch_positives` training interactions, each
    with as many uniformly sampled negatives, and counts with `item_cnt[items] += 1`: an item repeated within
    a batch is counted once. So the score is the number of *batches* an item occurs in (positive or sampled
    negative), which saturates at the number of batches: the most popular items tie at the top, and
    `torch.topk` orders tied items in an arbitrary fixed order. Here the same counts are drawn with a seeded
    generator and ties are broken by a fixed seeded jitter below one count. Not a model to use: a lesson in
    how an implementation detail moves a baseline."""

    name = "popularity (RecBole's count)"

    def __init__(self, items: Sequence, batch_positives: int = 1024, seed: int = C.SEED):
        super().__init__(items)
        if batch_positives < 1:
            raise ValueError(f"batch_positives must be >= 1, got {batch_positives}")
        self.batch_positives, self.seed = batch_positives, seed

    def fit(self, events: pd.DataFrame) -> "RecBolePopularity":
        self._prepare(events)
        rng = np.random.default_rng(self.seed)
        positives = self.user_items.tocoo().col
        positives = positives[rng.permutation(len(positives))]
        n_items = self.user_items.shape[1]
        counts = np.zeros(n_items)
        for start in range(0, len(positives), self.batch_positives):
            batch = positives[start:start + self.batch_positives]
            counts[np.unique(np.concatenate([batch, rng.integers(0, n_items, size=len(batch))]))] += 1
        self.batches = -(-len(positives) // self.batch_positives)
        self.counts = counts + 0.5 * rng.random(n_items)  # ties: a fixed arbitrary order, never across counts
        return self


class ItemKNN(Recommender):
    """Item-based collaborative filtering with shrunk cosine similarity.

    sim(i, j) = |U_i ∩ U_j| / (√|U_i| · √|U_j| + λ), keeping each item's `neighbours` most similar items;
    score(u, j) = Σ_{i ∈ H(u)} sim(i, j) over the user's history H(u). The shrinkage λ damps
    similarities supported by few co-occurrences.
    """

    name = "itemknn"

    def __init__(self, items: Sequence, shrinkage: float = 10.0, neighbours: int = 100):
        super().__init__(items)
        self.shrinkage, self.neighbours = shrinkage, neighbours

    def fit(self, events: pd.DataFrame, item_events: pd.DataFrame | None = None) -> "ItemKNN":
        """Similarities from `events` (plus `item_events`, which never enter a user's history)."""
        self._prepare(events)
        matrix = self._item_matrix(item_events)
        self.co = (matrix.T @ matrix).toarray().astype(np.float64)  # co-occurrence counts
        self.similarity = self._similarity(self.co)
        return self

    def update(self, events: pd.DataFrame) -> "ItemKNN":
        """Online update without a retrain: each new (user, item) adds one co-occurrence with every item
        already in that user's history, then similarities are recomputed from the kept counts (the
        result equals a fit on old + new events; the cost does not grow with the number of old events)."""
        added = pd.DataFrame(self._append(events), columns=["row", "col"])
        for row, cols in added.groupby("row", sort=False)["col"]:
            history = sorted(set(self.user_items[row].indices.tolist()) - set(cols))  # before these events
            for col in cols:
                self.co[col, col] += 1.0
                self.co[col, history] += 1.0
                self.co[history, col] += 1.0
                history.append(col)
        self.similarity = self._similarity(self.co)
        return self

    def _similarity(self, co: np.ndarray) -> sp.csr_matrix:
        norms = np.sqrt(np.diag(co))
        denominator = np.outer(norms, norms) + self.shrinkage
        sim = np.divide(co, denominator, out=np.zeros_like(co), where=denominator > 0)  # unseen items: 0, not NaN
        np.fill_diagonal(sim, 0.0)
        if self.neighbours < sim.shape[0]:
            cut = np.argpartition(-sim, self.neighbours, axis=1)[:, self.neighbours:]
            np.put_along_axis(sim, cut, 0.0, axis=1)
        return sp.csr_matrix(sim)

    def scores(self, users: Sequence) -> np.ndarray:
        return (self.user_items[self._rows(users)] @ self.similarity).toarray()


class EASE(Recommender):
    """EASE (Steck, WWW 2019): a linear item-item model with a zero diagonal, in closed form.

    minimise ‖X − XB‖² + λ‖B‖² subject to diag(B) = 0, over the users × items training matrix X. With
    P = (XᵀX + λI)⁻¹ the solution is B = I − P · diag(1 / diag P), i.e. B_ij = −P_ij / P_jj off the
    diagonal; score(u, ·) = X_u B. One inverse of an items × items matrix, no iterations.
    """

    name = "ease"

    def __init__(self, items: Sequence, regularization: float = 250.0):
        super().__init__(items)
        if regularization <= 0:
            raise ValueError(f"regularization must be positive, got {regularization}")
        self.regularization = regularization

    def fit(self, events: pd.DataFrame, item_events: pd.DataFrame | None = None) -> "EASE":
        """B from `events` (plus `item_events`, which never enter a user's history)."""
        self._prepare(events)
        matrix = self._item_matrix(item_events)
        gram = (matrix.T @ matrix).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.regularization
        precision = np.linalg.inv(gram)
        self.weights = -precision / np.diag(precision)[None, :]
        np.fill_diagonal(self.weights, 0.0)
        return self

    def scores(self, users: Sequence) -> np.ndarray:
        return np.asarray(self.user_items[self._rows(users)] @ self.weights)


class ImplicitMF(Recommender):
    """Matrix factorisation from the `implicit` library: ALS (confidence-weighted least squares) or BPR
    (pairwise ranking). score(u, i) = x_u · y_i."""

    def __init__(self, items: Sequence, algorithm: str = "als", factors: int = 64, iterations: int = 30,
                 regularization: float = 0.05, alpha: float = 20.0, learning_rate: float = 0.01, seed: int = C.SEED):
        super().__init__(items)
        if algorithm not in ("als", "bpr"):
            raise ValueError(f"algorithm must be 'als' or 'bpr', not {algorithm!r}")
        self.algorithm, self.name = algorithm, algorithm
        self.params = dict(factors=factors, iterations=iterations, regularization=regularization, alpha=alpha,
                           learning_rate=learning_rate, seed=seed)

    def fit(self, events: pd.DataFrame) -> "ImplicitMF":
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        from threadpoolctl import threadpool_limits

        self._prepare(events)
        self.events = events[[C.COL_USER, C.COL_ITEM]]
        p = self.params
        # implicit parallelises itself; a BLAS pool on top thrashes (ALS checks, and warns, when it is created)
        with threadpool_limits(1, "blas"):
            if self.algorithm == "als":
                model = AlternatingLeastSquares(factors=p["factors"], regularization=p["regularization"], alpha=p["alpha"],
                                                iterations=p["iterations"], random_state=p["seed"], num_threads=1)
            else:
                model = BayesianPersonalizedRanking(factors=p["factors"], learning_rate=p["learning_rate"],
                                                    regularization=p["regularization"], iterations=p["iterations"],
                                                    random_state=p["seed"], num_threads=1)
            model.fit(self.user_items.tocsr(), show_progress=False)
        self.user_factors, self.item_factors = np.asarray(model.user_factors), np.asarray(model.item_factors)
        return self

    def fold_in(self, events: pd.DataFrame) -> "ImplicitMF":
        """A refit, with the same hyper-parameters and seed, on the training events plus `events`: the user
        factors are learnt from the history, so a history-only fold-in would change nothing."""
        model = copy.copy(self)
        return model.fit(pd.concat([self.events, events], ignore_index=True))

    def scores(self, users: Sequence) -> np.ndarray:
        return self.user_factors[self._rows(users)] @ self.item_factors.T


class ContentBased(Recommender):
    """Content-based: user profile = recency-weighted mean of the embeddings of the items in their history,
    weight γ^(n−1−t) for the t-th of n items (the latest weighs 1); score = cosine(profile, item)."""

    name = "content"

    def __init__(self, items: Sequence, embeddings: np.ndarray, decay: float = 0.8):
        super().__init__(items)
        if len(embeddings) != len(self.items):
            raise ValueError(f"{len(embeddings)} embeddings for {len(self.items)} items")
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        self.embeddings = embeddings / np.where(norms > 0, norms, 1.0)
        self.decay = decay

    def fit(self, events: pd.DataFrame) -> "ContentBased":
        self._prepare(events)
        self._profiles()
        return self

    def fold_in(self, events: pd.DataFrame) -> "ContentBased":
        """A copy whose profiles are recomputed from the histories plus `events` (the latest weighs 1)."""
        model = super().fold_in(events)
        model._profiles()
        return model

    def _profiles(self) -> None:
        profiles = np.zeros((len(self.users), self.embeddings.shape[1]))
        for row, history in enumerate(self.histories.loc[self.users]):
            idx = self.item_index[history].to_numpy()
            weights = self.decay ** np.arange(len(idx) - 1, -1, -1)
            profiles[row] = weights @ self.embeddings[idx]
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        self.profiles = profiles / np.where(norms > 0, norms, 1.0)

    def scores(self, users: Sequence) -> np.ndarray:
        return self.profiles[self._rows(users)] @ self.embeddings.T


def minmax_per_row(scores: np.ndarray) -> np.ndarray:
    """Scale each row to [0, 1] (−inf stays −inf; a constant row becomes 0)."""
    finite = np.where(np.isfinite(scores), scores, np.nan)
    low, high = np.nanmin(finite, axis=1, keepdims=True), np.nanmax(finite, axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    return np.where(np.isfinite(scores), (scores - low) / span, -np.inf)


def ranks_per_row(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each item within its row (ties broken by item index)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return ranks


class WeightedFusion(Recommender):
    """Hybrid: Σ_m w_m · minmax(score_m) over already-fitted component models."""

    name = "weighted fusion"

    def __init__(self, models: Sequence[Recommender], weights: Sequence[float]):
        super().__init__(models[0].items)
        if len(models) != len(weights):
            raise ValueError(f"{len(models)} models but {len(weights)} weights")
        self.models, self.weights = list(models), np.asarray(weights, dtype=float)
        if (self.weights < 0).any() or not (self.weights > 0).any():
            raise ValueError(f"weights must be non-negative with at least one positive, got {self.weights.tolist()}")
        for m in self.models:
            if not np.array_equal(m.items, self.items):
                raise ValueError("fused models must share one item catalogue")

    def fit(self, events: pd.DataFrame) -> "WeightedFusion":
        self._prepare(events)
        return self

    def fold_in(self, events: pd.DataFrame) -> "WeightedFusion":
        """A copy over each component's own fold-in of `events`, with the same weights."""
        model = super().fold_in(events)
        model.models = [m.fold_in(events) for m in self.models]
        return model

    def _component_scores(self, users: Sequence):
        """Each component's scores with the users' training history masked (−inf), so history items do
        not take up the top ranks or stretch the min-max range."""
        for model, weight in zip(self.models, self.weights):
            if weight:
                yield model.masked_scores(users), weight

    def scores(self, users: Sequence) -> np.ndarray:
        return sum(w * minmax_per_row(s) for s, w in self._component_scores(users))


class RRFusion(WeightedFusion):
    """Reciprocal rank fusion: Σ_m w_m / (k + rank_m(i)), with k = 60 by default (Cormack et al., 2009)."""

    name = "reciprocal rank fusion"

    def __init__(self, models: Sequence[Recommender], weights: Sequence[float] | None = None, k: int = 60):
        super().__init__(models, weights if weights is not None else [1.0] * len(models))
        self.k = k

    def scores(self, users: Sequence) -> np.ndarray:
        return sum(w / (self.k + ranks_per_row(s)) for s, w in self._component_scores(users))
