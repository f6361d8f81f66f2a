"""Behavioural checks of a search encoder (CheckList-style): invariances, directional expectations and
minimum-functionality cases. Each check returns one row per case with a pass flag, so a notebook can
report pass rates and show the failures.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

#: (query, a product it should find, a product it should rank lower) — written by hand, not from the data.
MINIMUM_FUNCTIONALITY = (
    ("cordless drill", "20V MAX Lithium-Ion Cordless Drill/Driver Kit", "Interior Flat Wall Paint, White, 1 Gal."),
    ("garden hose", "5/8 in. x 50 ft. Heavy-Duty Garden Hose", "Claw Hammer with Fiberglass Handle"),
    ("white paint", "Interior Flat Wall Paint, White, 1 Gal.", "Black Ink Cartridge for Laser Printers"),
    ("led light bulb", "60-Watt Equivalent A19 LED Light Bulb Soft White (4-Pack)", "Stainless Steel Kitchen Sink"),
    ("toilet seat", "Round Closed Front Toilet Seat in White", "Outdoor Patio Dining Chair"),
    ("lawn mower", "21 in. Gas Walk Behind Push Lawn Mower", "Ceramic Floor Tile, 12 in. x 12 in."),
    ("kitchen faucet", "Single-Handle Pull-Down Sprayer Kitchen Faucet in Stainless Steel", "Ceiling Fan with Light Kit"),
    ("wood screws", "#8 x 1-1/4 in. Phillips Flat-Head Wood Screws (100-Pack)", "Vinyl Window Blinds, 36 in."),
    ("stapler", "Desktop Stapler, 20-Sheet Capacity, Black", "Ballpoint Pens, Medium Point, Blue (12-Pack)"),
    ("printer paper", "Multipurpose Copy Paper, 8.5 x 11, 500 Sheets", "Desktop Stapler, 20-Sheet Capacity, Black"),
)


_DTYPES = {"query": object, "title": object, "score": float, "rank": int, "check": object, "variant": object,
           "variant_score": float, "variant_rank": int, "passed": bool}


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    """No cases, with each column's real dtype: concatenated with other checks, `passed` stays boolean (an
    object column would turn `~passed` into integers -1/-2)."""
    return pd.DataFrame({column: pd.Series(dtype=_DTYPES[column]) for column in columns})


def pair_scores(encoder, queries: Sequence[str], titles: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Cosine similarity of each (query, title) pair under a sentence encoder."""
    q = encoder.encode(list(queries), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                       show_progress_bar=False)
    t = encoder.encode(list(titles), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                       show_progress_bar=False)
    return np.einsum("ij,ij->i", q, t)


def one_letter_typo(query: str) -> str:
    """Drop one interior letter of the query's longest word (≥ 4 letters), deterministically: the middle one."""
    words = query.split()
    if not words:
        raise ValueError("empty query")
    position = max(range(len(words)), key=lambda i: (len(words[i]), -i))
    word = words[position]
    if len(word) < 4:
        return query
    middle = len(word) // 2
    words[position] = word[:middle] + word[middle + 1:]
    return " ".join(words)


#: unit abbreviations as Home Depot titles and queries write them, and the words searchers also type
UNIT_WORDS = {"in.": "inch", "in": "inch", "ft.": "feet", "ft": "feet", "gal.": "gallon", "gal": "gallon",
              "lb.": "pound", "lb": "pound", "lbs": "pounds", "oz.": "ounce", "oz": "ounce", "qt.": "quart",
              "qt": "quart", "sq.": "square", "sq": "square", "yd.": "yard", "yd": "yard", "mm": "millimeter"}
UNIT_ABBREVIATIONS = {"inch": "in.", "inches": "in.", "foot": "ft.", "feet": "ft.", "gallon": "gal.", "gallons": "gal.",
                      "pound": "lb.", "pounds": "lb.", "ounce": "oz.", "ounces": "oz.", "quart": "qt.", "square": "sq.",
                      "yard": "yd.", "millimeter": "mm"}


def respell_units(query: str) -> str:
    """Swap every unit word between its abbreviation and its spelling ("1/2 in. pipe" ↔ "1/2 inch pipe"); a
    unit abbreviation counts only after a number ("in" alone is a preposition). The query unchanged if it has none."""
    words = query.split()
    out = []
    for i, word in enumerate(words):
        key = word.lower()
        after_number = i > 0 and any(ch.isdigit() for ch in words[i - 1])
        if key in UNIT_ABBREVIATIONS:
            out.append(UNIT_ABBREVIATIONS[key])
        elif key in UNIT_WORDS and after_number:
            out.append(UNIT_WORDS[key])
        else:
            out.append(word)
    return " ".join(out)


def toggle_plural(query: str) -> str:
    """The query with its last word's number flipped: "drill bit" → "drill bits", "batteries" → "battery".
    A last word without letters (a size, a model number) leaves the query unchanged."""
    words = query.split()
    if not words:
        raise ValueError("empty query")
    word = words[-1]
    if not word.isalpha() or len(word) < 3:
        return query
    lower = word.lower()
    if lower.endswith("ies"):
        word = word[:-3] + "y"
    elif lower.endswith(("ches", "shes", "xes", "sses", "zes")):
        word = word[:-2]
    elif lower.endswith("s") and not lower.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif lower.endswith("y") and lower[-2] not in "aeiou":
        word = word[:-1] + "ies"
    elif lower.endswith(("ch", "sh", "x", "z", "ss")):
        word = word + "es"
    else:
        word = word + "s"
    return " ".join(words[:-1] + [word])


#: query rewrites a searcher would consider the same request: the relevant product must keep its rank
VARIANTS = {"plural": toggle_plural, "units": respell_units, "typo": one_letter_typo}


def _ranks(encoder, queries: Sequence[str], titles: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
    """1-based rank of each query's title among `candidates` (which must contain it), by cosine."""
    q = encoder.encode(list(queries), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    c = encoder.encode(list(candidates), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    scores = q @ c.T
    position = {title: i for i, title in enumerate(candidates)}
    own = scores[np.arange(len(queries)), [position[t] for t in titles]]
    return 1 + (scores > own[:, None]).sum(axis=1)


def invariance_checks(encoder, queries: Sequence[str], titles: Sequence[str], candidates: Sequence[str],
                      rank_tolerance: int = 0) -> pd.DataFrame:
    """Per (query, relevant title) and per rewrite in `VARIANTS` (plural ↔ singular, unit abbreviation ↔
    spelling, a one-letter typo): does the relevant title keep its rank among `candidates`? It may worsen by
    at most `rank_tolerance` places. Absolute cosines of a rewritten query do move; what matters to a
    searcher is whether the product still comes where it came. Rewrites that leave a query unchanged are
    left out (no check can pass by construction)."""
    missing = set(titles) - set(candidates)
    if missing:
        raise ValueError(f"{len(missing)} relevant titles are not among the candidates")
    base = pair_scores(encoder, queries, titles)
    rank = _ranks(encoder, queries, titles, candidates)
    frame = pd.DataFrame({"query": list(queries), "title": list(titles), "score": base, "rank": rank})
    parts = []
    for check, rewrite in VARIANTS.items():
        variants = [rewrite(q) for q in queries]
        changed = np.array([v != q for v, q in zip(variants, queries)])
        if not changed.any():
            continue
        kept = [v for v, c in zip(variants, changed) if c]
        sub = frame[changed].copy()
        variant_rank = _ranks(encoder, kept, sub["title"].tolist(), candidates)
        parts.append(sub.assign(check=check, variant=kept, variant_score=pair_scores(encoder, kept, sub["title"].tolist()),
                                variant_rank=variant_rank, passed=variant_rank <= sub["rank"].to_numpy() + rank_tolerance))
    columns = ["query", "title", "score", "rank", "check", "variant", "variant_score", "variant_rank", "passed"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else _empty(columns)


def brand_checks(encoder, queries: Sequence[str], titles: Sequence[str], brands: Sequence[str | None],
                 tolerance: float = 0.0) -> pd.DataFrame:
    """Adding the product's own brand to a query must not lower that product's score (beyond `tolerance`).

    Cases whose brand is unknown or already in the query are skipped.
    """
    rows = [(q, t, b) for q, t, b in zip(queries, titles, brands) if b and b.lower() not in q.lower()]
    if not rows:
        return _empty(["query", "title", "score", "check", "variant", "variant_score", "passed"])
    q, t, b = map(list, zip(*rows))
    variants = [f"{brand} {query}" for brand, query in zip(b, q)]
    base, with_brand = pair_scores(encoder, q, t), pair_scores(encoder, variants, t)
    return pd.DataFrame({"query": q, "title": t, "score": base, "check": "brand", "variant": variants,
                         "variant_score": with_brand, "passed": with_brand >= base - tolerance})


def minimum_functionality(encoder, cases: Sequence[tuple[str, str, str]] = MINIMUM_FUNCTIONALITY) -> pd.DataFrame:
    """Hand-written cases: the query must score its matching product above an unrelated one."""
    queries, good, bad = map(list, zip(*cases))
    good_scores, bad_scores = pair_scores(encoder, queries, good), pair_scores(encoder, queries, bad)
    return pd.DataFrame({"query": queries, "title": good, "score": good_scores, "check": "minimum functionality",
                         "variant": bad, "variant_score": bad_scores, "passed": good_scores > bad_scores})
