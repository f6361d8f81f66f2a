import json

import pytest

from ecomrec import reference, reporting
from ecomrec.notebook import cpu_description


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A finished two-chapter run, as `make report` leaves it."""
    monkeypatch.setattr(reporting, "_current", None)
    report = tmp_path / "reports" / "full"
    for name, seconds, peak in (("01_data", 30.0, None), ("02_augmentation", 2640.0, 3.5)):
        reporting.start(name, report / "metrics")
        reporting.metric_key("+ templates")  # a display name to carry along
        if peak is not None:
            reporting.record("augment/all/notebook/peak_memory_gib", peak)
        reporting.complete(profile="full", seed=42)
        (report / f"{name}.ipynb").write_text(json.dumps({"metadata": {"papermill": {"duration": seconds}}, "cells": []}))
    (report / "summary.md").write_text("# summary\n")
    return report


def test_publish_copies_the_run_and_writes_its_manifest(run, tmp_path):
    target = tmp_path / "reports" / "reference"
    manifest = json.loads(reference.publish(run, target, names=["01_data", "02_augmentation"]).read_text())
    assert sorted(p.name for p in (target / "metrics").iterdir()) == [
        "01_data.json", "01_data.names.json", "02_augmentation.json", "02_augmentation.names.json"]
    assert (target / "summary.md").read_text() == "# summary\n"
    assert manifest["notebooks"] == {"01_data": {"wall_minutes": 0.5, "peak_memory_gib": None},
                                     "02_augmentation": {"wall_minutes": 44.0, "peak_memory_gib": 3.5}}
    assert manifest["total_wall_minutes"] == 44.5 and manifest["seed"] == 42 and manifest["profile"] == "full"
    assert manifest["machine"]["cores"] >= 1 and manifest["machine"]["cpu"] == cpu_description()
    assert reporting.compare(run / "metrics", target / "metrics")[0]["difference"] == 0  # make compare reads it


def test_publish_refuses_an_incomplete_or_mixed_run(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="03_pretraining did not finish"):
        reference.publish(run, tmp_path / "ref", names=["01_data", "02_augmentation", "03_pretraining"])
    reporting.start("02_augmentation", run / "metrics")
    reporting.complete(profile="full", seed=7)
    with pytest.raises(ValueError, match="different seeds"):
        reference.publish(run, tmp_path / "ref", names=["01_data", "02_augmentation"])
    assert not (tmp_path / "ref").exists()


def test_chapters_lists_every_notebook():
    assert "04b_llm_synthesis" in reference.chapters() and reference.chapters()[0] == "01_data"
