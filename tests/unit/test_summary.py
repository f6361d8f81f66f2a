import re

import pytest

from ecomrec import reporting
from ecomrec.summary import display_name, headline_figures, summary_markdown


@pytest.fixture
def metrics_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(reporting, "_current", None)
    return tmp_path / "full" / "metrics"


def recorded_run(metrics_dir) -> dict:
    """A small run in the notebooks' own key scheme, recorded through `reporting` as a notebook would."""
    reporting.start("04_finetuning", metrics_dir)
    reporting.record("search/test/protocol/queries", 2000)
    reporting.record("search/all/protocol/catalogue", 54667)
    for name, value in (("BM25", 0.321), ("MiniLM + MNRL, LoRA", 0.310), ("MiniLM + MNRL + synthetic queries", 0.326)):
        key = f"search/test/{reporting.metric_key(name)}/ndcg@10"
        reporting.record(key, value)
        reporting.record(f"{key}_ci_low", value - 0.01)
        reporting.record(f"{key}_ci_high", value + 0.01)
    reporting.record("search/test/cross_encoder/rmse", 0.6)  # a helper row, not a system
    reporting.record("search/test/selected_on_valid/ndcg@10", 0.326)
    reporting.start("06_evaluation", metrics_dir)
    reporting.record("eval/train/augmentation/batch_size", 32)
    for name, pool, delta in (("+ templates", 900, (0.01, 0.02, 0.03)), ("+ generator", 12, None),
                              ("+ uniform negatives", 900, (-0.05, -0.03, -0.01)),
                              ("+ adversarial negatives", 900, (-0.01, 0.001, 0.02))):
        key = reporting.metric_key(name)
        reporting.record(f"eval/train/{key}/pool_pairs", pool)
        if delta:
            low, diff, high = delta
            reporting.record(f"eval/test/{key}/ndcg@10_delta", diff)
            reporting.record(f"eval/test/{key}/ndcg@10_delta_ci_low", low)
            reporting.record(f"eval/test/{key}/ndcg@10_delta_ci_high", high)
    reporting.record("eval/test/online/offline_lift_ndcg@10", 0.005)
    reporting.record("eval/test/online/ab_users_per_arm", 12345)
    reporting.record("eval/test/online/interleaving_largest_simulation", 1600)
    return reporting.load_metrics(metrics_dir)


def record_curve(metrics_dir) -> dict:
    """06's data-efficiency curve as 06 records it: real only at N = 0, 100; one synthetic row with a Δ."""
    reporting.start("06_evaluation", metrics_dir)
    for row, n, value, delta, bound in (("real only", 0, 0.279, None, 0), ("real only", 100, 0.281, None, 0),
                                        ("SmolLM2 LoRA (04b)", 0, 0.285, (0.001, 0.006, 0.011), 1),
                                        ("SmolLM2 LoRA (04b)", 100, 0.280, (-0.004, -0.001, 0.002), 1)):
        key = f"curve/test/{reporting.metric_key(f'{row} N={n}')}"
        reporting.record(f"{key}/ndcg@10", value)
        reporting.record(f"{key}/upper_bound", bound)
        if delta:
            for suffix, v in zip(("_ci_low", "", "_ci_high"), delta):
                reporting.record(f"{key}/ndcg@10_delta{suffix}", v)
    return reporting.load_metrics(metrics_dir)


def test_the_curve_is_a_table_and_a_figure(metrics_dir, tmp_path):
    recorded = record_curve(metrics_dir)
    text = summary_markdown(recorded, "full", reporting.load_names(metrics_dir))
    assert "| N | real only | SmolLM2 LoRA (04b) |" in text
    assert "| 0 | 0.279 | 0.285 (+0.006, helped)* |" in text
    assert "| 100 | 0.281 | 0.280 (-0.001, made no detectable difference)* |" in text
    assert [p.name for p in headline_figures(recorded, tmp_path / "figures")] == ["curve.svg"]


def test_display_name_undoes_metric_key():
    for name in ("MiniLM + MNRL + synthetic queries", "BM25 → cross-encoder", "+ templates", "real + SmolLM2", "SASRec"):
        assert display_name(reporting.metric_key(name)) == name
    assert display_name("MiniLM_plus_MNRL_LoRA") == "MiniLM + MNRL LoRA"  # the comma is lost without a recorded name
    assert display_name("MiniLM_plus_MNRL_LoRA", {"MiniLM_plus_MNRL_LoRA": "MiniLM + MNRL, LoRA"}) == "MiniLM + MNRL, LoRA"
    assert display_name("surplus_stock") == "surplus stock"  # "plus" only as a whole segment word


def test_metric_key_remembers_names_per_notebook(metrics_dir):
    assert reporting.metric_key("MiniLM + MNRL, LoRA") == "MiniLM_plus_MNRL_LoRA"  # nothing recording: nothing kept
    reporting.start("04_finetuning", metrics_dir)
    reporting.metric_key("MiniLM + MNRL, LoRA")
    reporting.metric_key("SASRec")  # already a key: nothing to remember
    assert reporting.load_names(metrics_dir) == {"MiniLM_plus_MNRL_LoRA": "MiniLM + MNRL, LoRA"}
    assert list(reporting.load_metrics(metrics_dir)) == ["04_finetuning"]  # the names file is no metrics file
    reporting.start("04_finetuning", metrics_dir)  # a new run forgets the old one's names
    assert reporting.load_names(metrics_dir) == {}


def test_summary_names_systems_and_computes_verdicts(metrics_dir):
    recorded = recorded_run(metrics_dir)
    text = summary_markdown(recorded, "full", reporting.load_names(metrics_dir))
    assert "2,000 test queries over 54,667 Home Depot products" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "NDCG@10" not in line]
    assert table == ["| MiniLM + MNRL, LoRA | 0.310 | [0.300, 0.320] |", "| BM25 | 0.321 | [0.311, 0.331] |",
                     "| MiniLM + MNRL + synthetic queries | 0.326 | [0.316, 0.336] |"]  # lowest first, helper rows out
    assert "- + templates: +0.020 [+0.010, +0.030] — helped" in text
    assert "- + uniform negatives: -0.030 [-0.050, -0.010] — hurt" in text
    assert "- + adversarial negatives: +0.001 [-0.010, +0.020] — made no detectable difference" in text
    assert "- + generator: left out — its pool had 12 pairs, under one batch" in text
    assert "12,345 users per arm" in text and "more than 1,600 impressions" in text
    assert "_plus_" not in text and "Recommendation" not in text  # 05 recorded nothing: no section, no blanks


def test_headline_sections_are_the_summarys_search_curve_rec_and_serving_tables(metrics_dir):
    from ecomrec.summary import headline_sections

    recorded = recorded_run(metrics_dir)
    names = reporting.load_names(metrics_dir)
    lines = headline_sections(recorded, names)
    assert "| BM25 | 0.321 | [0.311, 0.331] |" in lines  # the same rows as the summary's search table
    summary_lines = summary_markdown(recorded, "full", names).splitlines()
    assert all(line in summary_lines for line in lines if line)
    assert not any("adversarial negatives" in line for line in lines)  # the ablations stay in the summary only


def test_summary_of_an_interval_that_does_not_hold_its_estimate_fails(metrics_dir):
    recorded = recorded_run(metrics_dir)
    recorded["06_evaluation"]["eval/test/plus_templates/ndcg@10_delta_ci_low"] = 0.05  # low > high
    with pytest.raises(ValueError, match="low <= high"):
        summary_markdown(recorded, "full")


def test_headline_figures_are_drawn_for_what_was_recorded(metrics_dir, tmp_path):
    recorded = recorded_run(metrics_dir)
    written = headline_figures(recorded, tmp_path / "figures")
    assert [p.name for p in written] == ["search.svg"]  # no 05 or 07 metrics: no empty pictures
    svg = written[0].read_text()
    assert svg.startswith("<?xml") and "MiniLM + MNRL + synthetic queries" in svg.replace("&#43;", "+")


def test_index_shows_figures_titles_and_readable_summary(metrics_dir):
    recorded_run(metrics_dir)
    report = metrics_dir.parent
    for name in ("04_finetuning", "06_evaluation"):
        (report / f"{name}.html").write_text("<html></html>")
    (report / "04_finetuning.ipynb").write_text('{"cells": [{"cell_type": "markdown", "source": ["# 04 · Fine-tuning\\n", "x"]}]}')
    page = reporting.build_index(report).read_text()
    assert "<img src='figures/search.svg'" in page and (report / "figures" / "search.svg").is_file()
    assert re.search(r"href='04_finetuning.html'>04_finetuning</a> — 04 · Fine-tuning", page)
    assert "href='06_evaluation.html'>06_evaluation</a> (" in page  # no notebook beside it: no title, no error
