"""Expectations on the real shared files: checksums, PROVENANCE counts, schema, value distributions."""

import pandas as pd
import pytest

from ecomrec.data.amazon import load_office
from ecomrec.data.homedepot import load_homedepot
from ecomrec.data.sources import PROVENANCE_COUNTS
from ecomrec.data.summary import raw_counts

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def hd(real_data_dir):
    return load_homedepot(real_data_dir)  # verifies sha256 and runs the schema checks


@pytest.fixture(scope="module")
def office(real_data_dir):
    return load_office(real_data_dir)


def test_counts_match_provenance(hd, office):
    assert raw_counts(hd, office) == PROVENANCE_COUNTS


def test_homedepot_relevance_distribution(hd):
    counts = hd.raw["relevance"].round(2).value_counts()
    expected = {1.0: 2_105, 1.33: 3_006, 1.67: 6_780, 2.0: 11_730, 2.33: 16_060, 2.67: 15_202, 3.0: 19_125}
    assert {k: int(counts[k]) for k in expected} == expected
    assert hd.judgments["relevance"].between(1, 3).all()
    per_query = hd.raw.groupby("search_term").size()
    assert per_query.median() == 7 and per_query.min() == 1 and per_query.max() == 16


def test_homedepot_cleaning_keeps_almost_everything(hd):
    assert 54_660 <= len(hd.products) <= 54_667
    assert len(hd.judgments) >= 74_000 and hd.queries["query"].is_unique


def test_office_ratings_dates_and_text_coverage(office):
    stars = office.raw_reviews["rating"].value_counts().to_dict()
    assert stars == {1.0: 1_130, 2.0: 1_726, 3.0: 5_060, 4.0: 15_015, 5.0: 30_327}
    days = pd.to_datetime(office.interactions["timestamp"], unit="s")
    assert str(days.min().date()) == "2000-09-29" and str(days.max().date()) == "2014-07-23"
    per_user = office.interactions.groupby("user_id").size()
    assert (per_user.min(), per_user.median(), per_user.max()) == (5, 7, 94)
    items = office.items
    assert round((items["brand"] != "").mean(), 3) == 0.800
    assert round((items["description"] != "").mean(), 3) == 0.736
    assert (items["title"] != "").mean() >= 0.998
    assert len(office.interactions) == 53_258  # already 5-core: the filter removes nothing


def test_office_titles_have_no_html_entities(office):
    assert not office.items["title"].str.contains(r"&(?:amp|quot|#\d+);", regex=True).any()
