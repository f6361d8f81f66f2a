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


def test_cold_queries_are_those_whose_relevant_products_no_train_query_judged():
    from ecomrec.data.pairs import RELEVANT, cold_queries

    judgments = lambda rows: pd.DataFrame(rows, columns=["query_id", "product_id", "relevance"])
    frames = {"homedepot/judgments_train": judgments([(1, 10, 3.0), (1, 11, 1.0)]),  # 11: judged, not relevant
              "homedepot/judgments_test": judgments([(5, 10, 3.0), (6, 11, 3.0), (7, 12, 3.0), (8, 10, 1.0), (8, 13, 3.0)]),
              "homedepot/queries": pd.DataFrame({"query_id": [1, 5, 6, 7, 8], "query": list("abcde")}),
              "homedepot/products": pd.DataFrame({"product_id": [10, 11, 12, 13], "title": list("wxyz")})}
    assert RELEVANT <= 3.0
    # 5 and 6: a relevant product was judged in train (any grade counts); 8 is cold: its low-graded 10 is not a relevant product
    assert sorted(cold_queries(frames, "test")) == [7, 8]
