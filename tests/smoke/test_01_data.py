import pytest

from ecomrec.config import PROFILES
from ecomrec.data.sources import PROVENANCE_COUNTS

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def metrics(run_notebook, real_data_dir):
    return run_notebook("01_data")


def test_records_full_data_counts(metrics):
    for dataset, counts in PROVENANCE_COUNTS.items():
        for name, value in counts.items():
            assert metrics[f"data/{dataset}/{name}"] == value


def test_smoke_splits_follow_the_profile(metrics):
    smoke = PROFILES["smoke"]
    assert metrics["search/valid/split/queries"] == smoke.search_valid_queries
    assert metrics["search/test/split/queries"] == smoke.search_test_queries
    assert metrics["search/train/split/queries"] == smoke.search_queries - smoke.search_valid_queries - smoke.search_test_queries
    assert metrics["search/all/split/shared_normalized_queries"] == 0
    # leave-one-out: exactly one test and one valid event per user
    assert metrics["rec/test/loo/events"] == metrics["rec/test/loo/users"] == metrics["rec/valid/loo/users"]
    assert metrics["rec/test/loo/users"] <= smoke.rec_users


def test_data_quality_figures(metrics):
    assert metrics["data/homedepot/raw/titles_with_html_entities"] > 0
    assert 0.15 < metrics["data/amazon-office/clean/same_day_consecutive_share"] < 0.25  # PROVENANCE: 18.9%
    assert metrics["data/homedepot/clean/median_query_words"] == 3
    assert metrics["rec/test/temporal/items_unseen_in_train"] > metrics["rec/test/loo/items_unseen_in_train"]


def test_the_completion_marker_names_the_code_and_the_cpu(metrics, smoke_dirs):
    """What `make publish` reads to refuse a reference whose chapters different code made."""
    from ecomrec import reporting
    from ecomrec.notebook import code_version, cpu_description

    marker = reporting.completion(smoke_dirs["reports"] / "smoke" / "metrics", "01_data")
    version = code_version()
    assert (marker["commit"], marker["code"]) == (version["commit"], version["code"]) and marker["cpu"] == cpu_description()
    if version["commit"] is not None:  # a checkout (CI's fresh clone is one)
        assert len(marker["commit"]) == 40 and len(marker["code"].split("-")) == 3
