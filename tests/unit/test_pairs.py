import pandas as pd

from ecomrec.data.pairs import judged_pairs, office_content_text, office_item_text
from ecomrec.data.prepare import prepare
from fixture_files import TINY


def test_judged_pairs_join_texts_and_threshold(data_dir, tmp_path):
    frames = prepare(TINY, data_dir, tmp_path, seed=1).frames
    all_train = judged_pairs(frames, "train")
    relevant = judged_pairs(frames, "train", 2.5)
    assert len(all_train) == len(frames["homedepot/judgments_train"])
    assert (relevant["relevance"] >= 2.5).all() and len(relevant) < len(all_train)
    assert list(all_train.columns) == ["query_id", "query", "product_id", "title", "relevance"]
    assert all_train["title"].str.len().gt(0).all()


def test_office_item_text_skips_missing_parts():
    items = pd.DataFrame({"title": ["Stapler", ""], "brand": ["Acme", "Bic"],
                          "category": ["Office Products > Staplers", "Office Products > Pens > Gel Pens"]})
    assert office_item_text(items).tolist() == ["Stapler | Acme | Staplers", "Bic | Gel Pens"]


def test_office_content_text_joins_fields_and_cuts_the_description():
    items = pd.DataFrame({"title": ["Stapler", "Pens"], "brand": ["Acme", None], "category": ["Office > Staplers", None],
                          "description": [" ".join(f"w{i}" for i in range(100)), None]})
    texts = office_content_text(items, max_description_words=3).tolist()
    assert texts == ["Stapler. Acme. Office > Staplers. w0 w1 w2", "Pens. . . "]
