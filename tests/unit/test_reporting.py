import json
import re

import numpy as np
import pytest

from ecomrec import reporting


@pytest.fixture
def metrics_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(reporting, "_current", None)
    return tmp_path / "smoke" / "metrics"


def test_record_writes_json_and_returns_value(metrics_dir):
    path = reporting.start("01_data", metrics_dir)
    assert reporting.record("data/homedepot/judgments", np.int64(74067)) == 74067
    assert reporting.record("search/test/bm25/ndcg@10", np.float32(0.25)) == pytest.approx(0.25)
    saved = json.loads(path.read_text())
    assert saved == {"data/homedepot/judgments": 74067, "search/test/bm25/ndcg@10": pytest.approx(0.25)}
    assert isinstance(saved["data/homedepot/judgments"], int)


def test_start_discards_an_older_run(metrics_dir):
    reporting.start("nb", metrics_dir)
    reporting.record("a/b/c", 1)
    path = reporting.start("nb", metrics_dir)
    assert json.loads(path.read_text()) == {}


@pytest.mark.parametrize("key", ["ndcg", "search/ndcg", "search//x/y", "search/test/bm 25/ndcg", 5])
def test_bad_keys_rejected(metrics_dir, key):
    reporting.start("nb", metrics_dir)
    with pytest.raises(ValueError, match="bad metric key"):
        reporting.record(key, 1.0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "0.3", None, True])
def test_bad_values_rejected(metrics_dir, value):
    reporting.start("nb", metrics_dir)
    with pytest.raises(ValueError, match="finite number"):
        reporting.record("a/b/c", value)


def test_record_before_start(metrics_dir):
    with pytest.raises(RuntimeError, match="start"):
        reporting.record("a/b/c", 1)


def test_completion_marker_exists_only_after_complete(metrics_dir):
    reporting.start("02_augmentation", metrics_dir)
    assert reporting.completion(metrics_dir, "02_augmentation") is None
    reporting.complete(profile="smoke", seed=42)
    assert reporting.completion(metrics_dir, "02_augmentation") == {"notebook": "02_augmentation", "profile": "smoke",
                                                                    "seed": 42}
    reporting.start("02_augmentation", metrics_dir)  # a new run: not complete until it says so
    assert reporting.completion(metrics_dir, "02_augmentation") is None
    assert reporting.load_metrics(metrics_dir) == {"02_augmentation": {}}  # the marker is no metrics file


def test_index_links_every_notebook_page(metrics_dir):
    report = metrics_dir.parent
    report.mkdir(parents=True)
    for name in ("01_data", "04_finetuning", "04b_llm_synthesis", "07_deployment"):
        (report / f"{name}.html").write_text("<html></html>")
    page = reporting.build_index(report).read_text()
    links = re.findall(r"<li><a href='([^']+)\.html'>", page)
    assert links == ["01_data", "04_finetuning", "04b_llm_synthesis", "07_deployment"]


def test_index_links_notebooks_and_lists_metrics(metrics_dir):
    reporting.start("01_data", metrics_dir)
    reporting.record("data/homedepot/judgments", 74067)
    report = metrics_dir.parent
    (report / "01_data.html").write_text("<html></html>")
    page = reporting.build_index(report).read_text()
    assert "href='01_data.html'" in page and "data/homedepot/judgments" in page and "74,067" in page
    assert "Summary" not in page
    (report / "summary.md").write_text("# summary\n\n| system | NDCG@10 |\n|---|---|\n| a <b> | 0.3 |\n")
    page = reporting.build_index(report).read_text()
    assert "href='summary.md'" in page and "<td>a &lt;b&gt;</td>" in page  # an HTML table, text escaped
    assert "| system |" not in page


def test_metric_key_makes_valid_segments(metrics_dir):
    assert reporting.metric_key("MiniLM + MNRL, LoRA") == "MiniLM_plus_MNRL_LoRA"
    assert reporting.metric_key("BM25 → cross-encoder") == "BM25_to_cross-encoder"
    assert reporting.metric_key("SASRec + sequence views") == "SASRec_plus_sequence_views"
    reporting.start("x", metrics_dir)
    reporting.record(f"a/b/{reporting.metric_key('scratch BERT (no fine-tuning)')}/ndcg@10", 0.1)  # a valid key
    with pytest.raises(ValueError, match="no letters"):
        reporting.metric_key(" ?! ")


def test_compare_lines_up_a_run_with_the_reference(metrics_dir, tmp_path):
    reporting.start("05_hybrid_recommendation", metrics_dir)
    reporting.record("rec/test/SASRec/ndcg@10", 0.050)
    reporting.record("rec/test/EASE/ndcg@10", 0.042)
    reporting.record("rec/test/new_row/ndcg@10", 0.01)
    reference = tmp_path / "reference" / "metrics"
    reference.mkdir(parents=True)
    (reference / "05_hybrid_recommendation.json").write_text(json.dumps(
        {"rec/test/SASRec/ndcg@10": 0.049, "rec/test/EASE/ndcg@10": 0.021, "rec/test/old_row/ndcg@10": 0.3}))
    rows = reporting.compare(metrics_dir, reference)
    assert [r["key"] for r in rows] == ["rec/test/EASE/ndcg@10", "rec/test/SASRec/ndcg@10",  # largest relative first
                                        "rec/test/new_row/ndcg@10", "rec/test/old_row/ndcg@10"]
    assert rows[0]["difference"] == pytest.approx(0.021) and rows[2]["reference"] is None and rows[3]["run"] is None
    with pytest.raises(FileNotFoundError, match="make report"):
        reporting.compare(metrics_dir, tmp_path / "missing")
