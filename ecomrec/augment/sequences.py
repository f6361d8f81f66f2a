"""Recommendation-side augmentation: CL4SRec-style sequence views (crop, mask, reorder) and synthetic
interactions for cold items from content similarity. Both are saved as frames that `05` can switch on."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ecomrec import config as C

MASK_ITEM = "[MASK]"


def crop(seq: Sequence, rng: np.random.Generator, ratio: float = 0.6) -> list:
    """A random contiguous sub-sequence of length max(1, ⌊ratio·n⌋)."""
    n = len(seq)
    length = max(1, int(np.floor(ratio * n)))
    start = int(rng.integers(0, n - length + 1))
    return list(seq[start:start + length])


def mask(seq: Sequence, rng: np.random.Generator, ratio: float = 0.3, token: str = MASK_ITEM) -> list:
    """Replace ⌊ratio·n⌋ random positions (at least one) with the mask token."""
    out = list(seq)
    count = max(1, int(np.floor(ratio * len(out))))
    for index in rng.choice(len(out), size=min(count, len(out)), replace=False):
        out[index] = token
    return out


def reorder(seq: Sequence, rng: np.random.Generator, ratio: float = 0.3) -> list:
    """Shuffle one random contiguous window of length max(2, ⌊ratio·n⌋); the rest stays in place."""
    out = list(seq)
    length = min(len(out), max(2, int(np.floor(ratio * len(out)))))
    start = int(rng.integers(0, len(out) - length + 1))
    window = out[start:start + length]
    out[start:start + length] = [window[i] for i in rng.permutation(length)]
    return out


AUGMENTATIONS = {"crop": crop, "mask": mask, "reorder": reorder}


def user_sequences(events: pd.DataFrame) -> pd.Series:
    """Each user's items in time order (events must already follow `order_events`)."""
    return events.groupby(C.COL_USER, sort=True)[C.COL_ITEM].agg(list)


def augment_sequences(events: pd.DataFrame, views: int, rng: np.random.Generator,
                      methods: Sequence[str] = ("crop", "mask", "reorder"), min_length: int = 3) -> pd.DataFrame:
    """`views` augmented copies of every training sequence of at least `min_length` items, with the method
    drawn uniformly per view; the originals are included with method 'none'."""
    rows = []
    for user, seq in user_sequences(events).items():
        rows.append((user, seq, "none"))
        if len(seq) < min_length:
            continue
        for _ in range(views):
            method = methods[int(rng.integers(len(methods)))]
            rows.append((user, AUGMENTATIONS[method](seq, rng), method))
    return pd.DataFrame(rows, columns=[C.COL_USER, "items", "method"])


def cold_item_interactions(events: pd.DataFrame, item_ids: Sequence[str], item_embeddings: np.ndarray,
                           max_interactions: int = 5, neighbours: int = 5, per_item: int = 3) -> pd.DataFrame:
    """Synthetic (user, cold item) events borrowed from the cold item's nearest warm items by content.

    A cold item has at most `max_interactions` training events. Its `neighbours` most similar warm items
    (cosine of normalised embeddings) lend their users: the `per_item` users with the highest summed
    similarity who have not met the cold item get a synthetic event at the time of their neighbour event.
    """
    ids = np.asarray(item_ids)
    position = {item: i for i, item in enumerate(ids)}
    counts = events[C.COL_ITEM].value_counts().reindex(ids, fill_value=0).to_numpy()
    cold, warm = np.flatnonzero(counts <= max_interactions), np.flatnonzero(counts > max_interactions)
    if len(cold) == 0 or len(warm) == 0:
        return pd.DataFrame(columns=[C.COL_USER, C.COL_ITEM, C.COL_TIMESTAMP, "source_item", "similarity"])
    sims = item_embeddings[cold] @ item_embeddings[warm].T
    by_item = events.assign(_pos=events[C.COL_ITEM].map(position))
    rows = []
    for row, cold_index in enumerate(cold):
        top = np.argsort(-sims[row], kind="stable")[:neighbours]
        lenders = by_item[by_item["_pos"].isin(warm[top])].assign(similarity=lambda f: f["_pos"].map(
            dict(zip(warm[top], sims[row, top]))))
        already = set(events.loc[events[C.COL_ITEM] == ids[cold_index], C.COL_USER])
        lenders = lenders[~lenders[C.COL_USER].isin(already)]
        score = lenders.groupby(C.COL_USER)["similarity"].sum().sort_index()
        for user in score.sort_values(ascending=False, kind="stable").index[:per_item]:
            best = lenders[lenders[C.COL_USER] == user].sort_values("similarity", ascending=False, kind="stable").iloc[0]
            rows.append((user, ids[cold_index], int(best[C.COL_TIMESTAMP]), best[C.COL_ITEM], float(best["similarity"])))
    return pd.DataFrame(rows, columns=[C.COL_USER, C.COL_ITEM, C.COL_TIMESTAMP, "source_item", "similarity"])
