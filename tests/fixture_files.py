"""Fixture files in the datasets' original formats, written by the tests themselves (never the real data)."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

from ecomrec.config import Profile

HOMEDEPOT_ROWS = [
    # id, product_uid, product_title, search_term, relevance
    (1, 100001, "Simpson Strong-Tie 12-Gauge Angle", "angle bracket", 3.0),
    (2, 100001, "Simpson Strong-Tie 12-Gauge Angle", "Angle  Bracket ", 2.0),  # normalises to a duplicate
    (3, 100002, "Briggs &amp; Stratton Mower", "lawn mower", 2.67),  # HTML entity
    (4, 100002, "Briggs & Stratton Mower", "mower", 2.33),  # second spelling of one product's title
    (5, 100002, "Briggs &amp; Stratton Mower", "gas mower", 1.67),
    (6, 100003, "Caf\u00e9 Table \u00bd in.", "cafe table", 2.0),  # latin-1 characters
    (7, 100004, "   ", "empty title", 3.0),  # empty after stripping
    (8, 100005, "Deck Stain", "deck stain", 1.0),
    (9, 100006, "Paint Roller", "roller", 2.5),
    (10, 100007, "Hammer", "claw hammer", 3.0),
    (11, 100008, "Drill Bits", "drill bit set", 2.0),
    (12, 100009, "Garden Hose 50 ft.", "garden hose", 3.0),
    (13, 100010, "Ceiling Fan", "ceiling fan", 2.67),
    (14, 100011, "Door Knob", "door knob", 2.33),
]


def write_homedepot(folder: Path, rows=HOMEDEPOT_ROWS, zipped: bool = True) -> Path:
    """Write a Kaggle-format train.csv (latin-1), zipped like the competition archive by default."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ['"id","product_uid","product_title","search_term","relevance"']
    lines += [f'{i},{uid},"{title}","{query}",{rel}' for i, uid, title, query, rel in rows]
    payload = ("\n".join(lines) + "\n").encode("latin-1")
    if not zipped:
        path = folder / "train.csv"
        path.write_bytes(payload)
        return path
    path = folder / "train.csv.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.csv", payload)
    return path


def office_events(n_users: int = 6, n_items: int = 6) -> list[dict]:
    """A dense little rating log: every user rates every item, two of them on the same day."""
    events = []
    for u in range(n_users):
        for i in range(n_items):
            day = 1_300_000_000 + 86_400 * (i if i < n_items - 1 else i - 1)  # last two items share a day
            events.append({"reviewerID": f"U{u}", "asin": f"B{i:03d}", "overall": float(1 + (u + i) % 5),
                           "unixReviewTime": day + 86_400 * u, "reviewTime": "01 1, 2011",
                           "reviewText": "text the loader must ignore", "helpful": [0, 0]})
    return events


def office_meta(n_items: int = 6) -> list[dict]:
    meta = [{"asin": f"B{i:03d}", "title": f"Stapler &amp; Co model {i}", "brand": "Acme",
             "categories": [["Office Products", "Office & School Supplies", "Staplers"]],
             "description": "A <b>sturdy</b> stapler", "price": 9.99, "imUrl": "http://x/y.jpg"}
            for i in range(n_items)]
    meta[1].pop("title")  # an item without a title
    meta.append({"asin": "B999", "title": "an item nobody rated", "categories": [["Office Products"]]})
    return meta


def write_office(folder: Path, events=None, meta=None, python_literal_meta: bool = True, gz: bool = True) -> tuple[Path, Path]:
    """Write reviews as JSON lines and meta as Python dict literals (the original 2014 formats)."""
    folder.mkdir(parents=True, exist_ok=True)
    events = office_events() if events is None else events
    meta = office_meta() if meta is None else meta
    opener = gzip.open if gz else open
    suffix = ".json.gz" if gz else ".json"
    reviews_path = folder / f"reviews_Office_Products_5{suffix}"
    meta_path = folder / f"meta_Office_Products{suffix}"
    with opener(reviews_path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in events)
    with opener(meta_path, "wt", encoding="utf-8") as fh:
        fh.writelines((repr(m) if python_literal_meta else json.dumps(m)) + "\n" for m in meta)
    return reviews_path, meta_path


# A profile small enough for the fixture data: 2 valid and 3 test queries, everything else kept.
TINY = Profile("tiny", search_queries=None, search_valid_queries=2, search_test_queries=3, rec_users=None, rec_kcore=5)

# A tiny search task for trainers: product titles, (query, title row) training pairs and valid pairs.
TINY_TITLES = ["cordless drill kit", "claw hammer", "white wall paint", "garden hose 50 ft", "kitchen faucet chrome",
               "round toilet seat", "led light bulb", "wood screws box"]
TINY_TRAIN = [("drill", 0), ("power drill", 0), ("hammer", 1), ("paint", 2), ("wall paint", 2), ("hose", 3),
              ("faucet", 4), ("toilet seat", 5), ("bulb", 6), ("screws", 7), ("led bulb", 6), ("claw hammer", 1)]
TINY_VALID = [("cordless drill", 0), ("garden hose", 3), ("kitchen faucet", 4), ("light bulb", 6)]


def tiny_sentence_model(tmp_path):
    """A one-layer, 32-wide random BERT sentence encoder with MiniLM's tokenizer, saved under tmp_path/tiny."""
    from transformers import BertConfig, BertModel

    from ecomrec.models.encoders import minilm_tokenizer, sentence_encoder

    import torch

    torch.manual_seed(0)  # the same random encoder whatever ran before (the test order moves the global RNG)
    tokenizer = minilm_tokenizer()
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64), add_pooling_layer=False).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    return sentence_encoder(tmp_path / "tiny")
