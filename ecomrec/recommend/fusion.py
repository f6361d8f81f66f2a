"""Learned fusion: a ranker over candidate features from several recommenders (learning to rank).

Candidates are the union of every model's top `depth` items per user. Each (user, candidate) row
carries every model's score and rank, the item's training popularity and the user's history length.
A gradient-boosted classifier learns p(candidate is the held-out item) on the validation targets and
ranks candidates by it for test.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec.recommend.models import Recommender, ranks_per_row


def candidate_features(models: dict[str, Recommender], users: Sequence, depth: int = 50,
                       exclude: dict | None = None, batch: int = 512) -> pd.DataFrame:
    """One row per (user, candidate item) with `<model>_score`, `<model>_rank`, popularity, history_length."""
    names = list(models)
    base = models[names[0]]
    for model in models.values():
        if not np.array_equal(model.items, base.items):
            raise ValueError("all models must share one item catalogue")
    popularity = np.asarray(base.user_items.sum(axis=0)).ravel()
    frames = []
    users = list(users)
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        blocked = base.blocked(chunk, exclude)
        scores, ranks = {}, {}
        for name, model in models.items():
            s = model.masked_scores(chunk, exclude)
            scores[name], ranks[name] = s, ranks_per_row(s)
        candidate = np.zeros_like(blocked)
        for name in names:
            candidate |= ranks[name] <= depth
        candidate &= ~blocked
        user_pos, item_pos = np.nonzero(candidate)
        frame = {C.COL_USER: np.asarray(chunk, dtype=object)[user_pos], C.COL_ITEM: base.items[item_pos]}
        for name in names:
            frame[f"{name}_score"] = scores[name][user_pos, item_pos]
            frame[f"{name}_rank"] = ranks[name][user_pos, item_pos]
        frame["popularity"] = popularity[item_pos]
        # training events only: the same feature for valid (fit) and test (apply), where `exclude` adds one item
        frame["history_length"] = np.asarray(base.user_items[base._rows(chunk)].sum(axis=1)).ravel()[user_pos]
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


class LearnedFusion:
    """Gradient-boosted trees (scikit-learn) on candidate features; fit on validation targets."""

    def __init__(self, seed: int = C.SEED, max_iter: int = 200, learning_rate: float = 0.05):
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.model = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate,
                                                    random_state=seed, early_stopping=False)

    @staticmethod
    def _x(features: pd.DataFrame) -> np.ndarray:
        x = features.drop(columns=[C.COL_USER, C.COL_ITEM, "label"], errors="ignore").to_numpy(dtype=np.float64)
        return np.where(np.isfinite(x), x, np.nan)  # trees handle missing values natively

    def fit(self, features: pd.DataFrame, targets: dict) -> "LearnedFusion":
        labels = np.fromiter((targets.get(u) == i for u, i in zip(features[C.COL_USER], features[C.COL_ITEM])),
                             dtype=bool, count=len(features))
        if labels.sum() == 0:
            raise ValueError("no candidate is a target: raise the candidate depth")
        self.columns = [c for c in features.columns if c not in (C.COL_USER, C.COL_ITEM, "label")]
        self.model.fit(self._x(features), labels)
        self.positives, self.rows = int(labels.sum()), len(labels)
        return self

    def recommend(self, features: pd.DataFrame, k: int = 10) -> pd.DataFrame:
        if [c for c in features.columns if c not in (C.COL_USER, C.COL_ITEM, "label")] != self.columns:
            raise ValueError("feature columns differ from those the ranker was fitted on")
        scored = features[[C.COL_USER, C.COL_ITEM]].assign(score=self.model.predict_proba(self._x(features))[:, 1])
        scored = scored.sort_values([C.COL_USER, "score", C.COL_ITEM], ascending=[True, False, True], kind="mergesort")
        top = scored.groupby(C.COL_USER, sort=False).head(k).copy()
        top["rank"] = top.groupby(C.COL_USER, sort=False).cumcount() + 1
        return top.reset_index(drop=True)
