import pandas as pd
import pytest

from fixture_files import HOMEDEPOT_ROWS, write_homedepot
from ecomrec.data.errors import DataFormatError
from ecomrec.data.homedepot import clean_homedepot, load_homedepot, read_homedepot_csv


@pytest.mark.parametrize("zipped", [True, False])
def test_reads_zip_and_plain_csv_in_latin1(tmp_path, zipped):
    raw = read_homedepot_csv(write_homedepot(tmp_path, zipped=zipped))
    assert len(raw) == len(HOMEDEPOT_ROWS)
    assert "Caf\u00e9 Table \u00bd in." in set(raw["product_title"])


def test_corrupt_zip_is_a_clear_error(tmp_path):
    path = tmp_path / "train.csv.zip"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataFormatError, match="not a valid zip archive"):
        read_homedepot_csv(path)


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,product_uid,product_title,query,relevance\n1,2,t,q,3\n")
    with pytest.raises(DataFormatError, match=r"missing columns \['search_term'\]"):
        read_homedepot_csv(path)


def test_cleaning(tmp_path):
    hd = clean_homedepot(read_homedepot_csv(write_homedepot(tmp_path)))
    titles = dict(zip(hd.products["product_id"], hd.products["title"]))
    assert titles[100002] == "Briggs & Stratton Mower"  # unescaped; both spellings now agree
    assert 100004 not in titles  # empty title dropped
    queries = dict(zip(hd.queries["query"], hd.queries["query_id"]))
    assert "angle bracket" in queries and "Angle  Bracket " not in queries
    merged = hd.judgments[hd.judgments["query_id"] == queries["angle bracket"]]
    assert merged[["relevance", "n_judgments"]].to_dict("records") == [{"relevance": 2.5, "n_judgments": 2}]
    assert len(hd.judgments) == len(HOMEDEPOT_ROWS) - 2  # one empty title, one merged duplicate
    log = hd.log.to_frame().set_index("step")
    assert log.loc["average duplicate (query, product) judgments", "removed"] == 1


def test_one_title_per_product_prefers_most_frequent():
    raw = pd.DataFrame({"id": [1, 2, 3], "product_uid": [7, 7, 7], "product_title": ["B title", "A title", "B title"],
                        "search_term": ["x", "y", "z"], "relevance": [2.0, 2.0, 2.0]})
    assert clean_homedepot(raw).products["title"].tolist() == ["B title"]


def test_out_of_range_relevance_dropped():
    raw = pd.DataFrame({"id": [1, 2], "product_uid": [7, 8], "product_title": ["a", "b"],
                        "search_term": ["x", "y"], "relevance": [3.0, 7.0]})
    assert clean_homedepot(raw).judgments["product_id"].tolist() == [7]


def test_load_from_data_dir(data_dir):
    hd = load_homedepot(data_dir)
    assert len(hd.products) == 10 and hd.judgments["relevance"].between(1, 3).all()


def test_a_corrupt_member_of_the_zip_is_a_clear_error(tmp_path):  # zlib.error inside the archive
    import zipfile

    path = tmp_path / "train.csv.zip"
    rows = "\n".join(f"{i},{100000 + i},Title {i},query {i},2.5" for i in range(3000))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.csv", "id,product_uid,product_title,search_term,relevance\n" + rows)
    data = bytearray(path.read_bytes())
    data[60:90] = bytes(b ^ 0xFF for b in data[60:90])  # inside the deflate stream, past the member header
    path.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match="could not be parsed.*decompressing"):
        read_homedepot_csv(path)


@pytest.mark.parametrize("column, value, message", [("product_uid", "abc", "product_uid must be whole numbers"),
                                                    ("product_uid", "12.5", "product_uid must be whole numbers"),
                                                    ("relevance", "high", "relevance must be a number")])
def test_non_numeric_ids_and_grades_are_a_clear_error(tmp_path, column, value, message):
    path = tmp_path / "train.csv"
    row = {"id": "1", "product_uid": "100001", "product_title": "Hammer", "search_term": "hammer", "relevance": "3"}
    row[column] = value
    path.write_text(",".join(row) + "\n" + ",".join(row.values()) + "\n", encoding="latin-1")
    with pytest.raises(DataFormatError, match=message):
        read_homedepot_csv(path)
