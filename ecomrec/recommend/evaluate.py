"""Leave-one-out evaluation with one held-out item per user, from the target's rank in a full ranking.

With a single relevant item at rank r (over all items not in the user's history):
HR@k = Recall@k = [r ≤ k], NDCG@k = [r ≤ k] / log2(r + 1) (the ideal DCG is 1), MRR = 1 / r.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec.recommend.models import Recommender


def target_ranks(model: Recommender, users: Sequence, targets: dict, exclude: dict | None = None,
                 batch: int = 1024) -> pd.Series:
    """Rank of each user's target among all items outside their history (and `exclude`); ties count
    against the target (pessimistic), so a model that scores everything equally gets no credit."""
    users = list(users)
    ranks = np.empty(len(users), dtype=np.int64)
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        scores = model.masked_scores(chunk, exclude)
        target_cols = model.item_index[[targets[u] for u in chunk]].to_numpy()
        target_scores = scores[np.arange(len(chunk)), target_cols]
        if np.isneginf(target_scores).any():
            raise ValueError("a target item is in the user's training history or exclusions")
        # items scoring at least the target's score, the target itself included
        ranks[start:start + len(chunk)] = (scores >= target_scores[:, None]).sum(axis=1)
    return pd.Series(ranks, index=pd.Index(users, name=C.COL_USER), name="rank")


def mean_ndcg(model: Recommender, targets: dict, k: int = 10) -> float:
    """Mean NDCG@k of `model` on {user: held-out item}, ranking every item outside each user's history
    (the score that early stopping, the searches and model selection read on valid)."""
    return float(rank_metrics(target_ranks(model, sorted(targets), targets), k=k)[f"ndcg@{k}"].mean())


def rank_metrics(ranks: pd.Series | np.ndarray, k: int = 10, recall_k: int = 20) -> pd.DataFrame:
    """Per user: hr@k, ndcg@k, mrr, recall@recall_k from target ranks (np.inf = not ranked)."""
    r = np.asarray(ranks, dtype=float)
    if (r < 1).any():
        raise ValueError("ranks start at 1")
    index = ranks.index if isinstance(ranks, pd.Series) else None
    return pd.DataFrame({f"hr@{k}": (r <= k).astype(float),
                         f"ndcg@{k}": np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0),
                         "mrr": 1.0 / r,
                         f"recall@{recall_k}": (r <= recall_k).astype(float)}, index=index)


def ranks_from_lists(recommendations: pd.DataFrame, targets: dict) -> pd.Series:
    """Target ranks from top-n lists (user, item, rank); np.inf where the target is not in the list."""
    hits = recommendations[recommendations[C.COL_ITEM].to_numpy() ==
                           recommendations[C.COL_USER].map(targets).to_numpy()]
    ranks = hits.set_index(C.COL_USER)["rank"].astype(float)
    users = pd.Index(list(targets), name=C.COL_USER)
    return ranks.reindex(users).fillna(np.inf).rename("rank")
