import json
import time

import pytest

from ecomrec import notebook, reporting


def test_begin_names_the_notebooks_it_needs(tmp_path):
    (tmp_path / "reports" / "smoke" / "metrics").mkdir(parents=True)
    (tmp_path / "reports" / "smoke" / "metrics" / "04_finetuning.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="05_hybrid_recommendation"):
        notebook.begin("06_evaluation", "smoke", 42, "cpu", str(tmp_path / "artifacts"), str(tmp_path / "reports"),
                       needs=("04_finetuning", "05_hybrid_recommendation"))


def test_begin_without_prepared_data_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data PROFILE=smoke"):
        notebook.begin("03_pretraining", "smoke", 42, "cpu", str(tmp_path / "artifacts"), str(tmp_path / "reports"),
                       "pretrain")


def test_finish_records_wall_time_and_peak_memory(tmp_path):
    path = reporting.start("07_deployment", tmp_path)
    assert notebook.finish("deploy", time.perf_counter() - 2.0) is None  # nothing echoed under the cell
    recorded = json.loads(path.read_text())
    assert 2.0 <= recorded["deploy/all/notebook/seconds"] < 60
    assert 0.01 < recorded["deploy/all/notebook/peak_memory_gib"] < 64  # GiB, whatever ru_maxrss's unit
