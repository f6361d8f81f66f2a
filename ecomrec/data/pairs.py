"""(query, product) pairs of one search split, joined with texts, for training and evaluation."""

from __future__ import annotations

import pandas as pd

from ecomrec import config as C

RELEVANT = 2.33  # mean rating at or above "fairly relevant"; about two thirds of the judgments


def judged_pairs(frames: dict[str, pd.DataFrame], split: str, min_relevance: float = 1.0) -> pd.DataFrame:
    """query_id, query, product_id, title, relevance for `split`'s judgments at or above `min_relevance`."""
    judgments = frames[f"homedepot/judgments_{split}"]
    judgments = judgments[judgments[C.COL_RELEVANCE] >= min_relevance]
    return (judgments.merge(frames["homedepot/queries"][[C.COL_QUERY_ID, C.COL_QUERY]], on=C.COL_QUERY_ID)
            .merge(frames["homedepot/products"], on=C.COL_PRODUCT_ID)
            [[C.COL_QUERY_ID, C.COL_QUERY, C.COL_PRODUCT_ID, C.COL_TITLE, C.COL_RELEVANCE]]
            .sort_values([C.COL_QUERY_ID, C.COL_PRODUCT_ID], kind="mergesort").reset_index(drop=True))


def office_item_text(items: pd.DataFrame) -> pd.Series:
    """What a search index sees of an Office item: title, brand and the leaf category."""
    leaf = items["category"].str.split(" > ").str[-1]
    parts = items[C.COL_TITLE].str.cat([items["brand"], leaf], sep=" | ")
    return parts.str.replace(r"(\s\|\s)+", " | ", regex=True).str.strip(" |")


def office_content_text(items: pd.DataFrame, max_description_words: int = 60) -> pd.Series:
    """What the content recommender embeds of an Office item: "title. brand. category path. description",
    the description cut to its first `max_description_words` words; a missing field is left empty."""
    description = items["description"].fillna("").str.split().str[:max_description_words].str.join(" ")
    return (items[C.COL_TITLE].fillna("") + ". " + items["brand"].fillna("") + ". " + items["category"].fillna("")
            + ". " + description)


def cold_queries(frames: dict[str, pd.DataFrame], split: str = "test") -> pd.Index:
    """Ids of `split`'s queries none of whose relevant products (mean rating ≥ `RELEVANT`) was judged for any train
    query: no real training pair can have taught a model those products."""
    judged_in_train = set(frames["homedepot/judgments_train"][C.COL_PRODUCT_ID])
    relevant = judged_pairs(frames, split, RELEVANT)
    cold = relevant.groupby(C.COL_QUERY_ID)[C.COL_PRODUCT_ID].agg(lambda p: not set(p) & judged_in_train)
    return cold.index[cold.to_numpy(dtype=bool)]
