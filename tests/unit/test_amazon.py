import gzip
import json

import pytest

from ecomrec.data.clean import order_events

from fixture_files import office_events, office_meta, write_office
from ecomrec.data.amazon import clean_office, iter_records, load_office, read_meta, read_reviews
from ecomrec.data.errors import DataFormatError


@pytest.mark.parametrize("python_literal", [True, False])
@pytest.mark.parametrize("gz", [True, False])
def test_reads_both_meta_formats_gzipped_or_plain(tmp_path, python_literal, gz):
    reviews_path, meta_path = write_office(tmp_path, python_literal_meta=python_literal, gz=gz)
    reviews = read_reviews(reviews_path)
    items = read_meta(meta_path, asins=set(reviews["item_id"]))
    assert len(reviews) == 36 and list(reviews.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert "B999" not in set(items["item_id"])  # unrated items are filtered out
    first = items.set_index("item_id").loc["B000"]
    assert first["title"] == "Stapler & Co model 0"
    assert first["category"] == "Office Products > Office & School Supplies > Staplers"
    assert first["top_category"] == "Office & School Supplies"
    assert items.set_index("item_id").loc["B001", "title"] == ""


def test_mixed_json_and_literal_lines(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"asin": "A"}) + "\n" + repr({"asin": "B", "title": "it's"}) + "\n\n")
    assert [r["asin"] for r in iter_records(path)] == ["A", "B"]


def test_unparseable_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"asin": "A"}\n{oops\n')
    with pytest.raises(DataFormatError, match=r"bad.json:2"):
        list(iter_records(path))


def test_truncated_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.json.gz"
    payload = gzip.compress(("\n".join(json.dumps(e) for e in office_events())).encode())
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DataFormatError, match="could not be read"):
        list(iter_records(path))


def test_review_missing_field(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"reviewerID": "U", "asin": "A", "overall": 5.0}) + "\n")
    with pytest.raises(DataFormatError, match="unixReviewTime"):
        read_reviews(path)


def test_empty_review_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("")
    with pytest.raises(DataFormatError, match="no reviews"):
        read_reviews(path)


def test_clean_is_independent_of_line_order(tmp_path):
    events = office_events()
    a = read_reviews(write_office(tmp_path / "a", events=events)[0])
    b = read_reviews(write_office(tmp_path / "b", events=events[::-1])[0])
    items = read_meta(write_office(tmp_path / "m")[1])
    clean_a, clean_b = clean_office(a, items), clean_office(b, items)
    assert clean_a.interactions.equals(clean_b.interactions)
    # same-day events (the last two items) are ordered by `order_events`' hash of (user, item)
    user0 = clean_a.interactions[clean_a.interactions["user_id"] == "U0"]
    tied = user0[user0["timestamp"] == user0["timestamp"].max()]
    assert len(tied) == 2
    assert user0["item_id"].tolist()[-2:] == order_events(tied.iloc[::-1], "user_id", "item_id", "timestamp")["item_id"].tolist()


def test_clean_drops_duplicates_and_applies_kcore(tmp_path):
    events = office_events() + [dict(office_events()[0], unixReviewTime=1_400_000_000, overall=2.0)]
    events += [{"reviewerID": "Ulonely", "asin": "B000", "overall": 5.0, "unixReviewTime": 1}]
    reviews = read_reviews(write_office(tmp_path, events=events)[0])
    office = clean_office(reviews, read_meta(write_office(tmp_path / "m")[1]), kcore=5)
    assert "Ulonely" not in set(office.interactions["user_id"])
    u0b0 = office.interactions[(office.interactions["user_id"] == "U0") & (office.interactions["item_id"] == "B000")]
    assert u0b0["rating"].tolist() == [2.0]  # the latest of the two duplicate events
    assert len(office.interactions) == 36


def test_load_from_data_dir(data_dir):
    office = load_office(data_dir)
    assert office.interactions["user_id"].nunique() == 6 and len(office.items) == 6


def test_a_corrupt_gzip_stream_is_a_clear_error(tmp_path):  # zlib.error, not a bare traceback
    path = tmp_path / "garbled.json.gz"
    payload = bytearray(gzip.compress("\n".join(json.dumps(e) for e in office_events() * 50).encode()))
    payload[40:60] = bytes(b ^ 0xFF for b in payload[40:60])
    path.write_bytes(bytes(payload))
    with pytest.raises(DataFormatError, match="could not be read.*decompressing"):
        list(iter_records(path))


@pytest.mark.parametrize("field, value", [("overall", "five stars"), ("unixReviewTime", "yesterday")])
def test_non_numeric_ratings_and_times_are_a_clear_error(tmp_path, field, value):
    path = tmp_path / "r.json"
    good = {"reviewerID": "U", "asin": "A", "overall": 5.0, "unixReviewTime": 1}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, field: value}) + "\n")
    with pytest.raises(DataFormatError, match=f"non-numeric {'rating' if field == 'overall' else 'timestamp'}.*{value}"):
        read_reviews(path)
