import json

import pytest

from ecomrec import reference, reporting


COMMIT, CODE, CPU = "0123456789abcdef0123456789abcdef01234567", "aaa-bbb-ccc", "Some CPU: AVX2 yes"


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
        reporting.complete(profile="full", seed=42, commit=COMMIT, code=CODE, uncommitted_changes=False, cpu=CPU)
        (report / f"{name}.ipynb").write_text(json.dumps({"metadata": {"papermill": {"duration": seconds}}, "cells": []}))
    (report / "summary.md").write_text("# summary\n")
    return report


def test_publish_copies_the_run_and_writes_its_manifest(run, tmp_path):
    target = tmp_path / "reports" / "reference"
    manifest = json.loads(reference.publish(run, target, names=["01_data", "02_augmentation"]).read_text())
    assert sorted(p.name for p in (target / "metrics").iterdir()) == [
        "01_data.json", "01_data.names.json", "02_augmentation.json", "02_augmentation.names.json"]
    assert (target / "summary.md").read_text() == "# summary\n"
    assert manifest["notebooks"] == {"01_data": {"wall_minutes": 0.5, "peak_memory_gib": None, "cpu": CPU},
                                     "02_augmentation": {"wall_minutes": 44.0, "peak_memory_gib": 3.5, "cpu": CPU}}
    assert manifest["total_wall_minutes"] == 44.5 and manifest["seed"] == 42 and manifest["profile"] == "full"
    assert manifest["code"] == CODE and manifest["commits"] == [COMMIT]  # what the chapters ran, not HEAD now
    assert manifest["uncommitted_changes"] is False
    assert manifest["machine"]["cores"] >= 1 and manifest["machine"]["cpu"] == CPU
    assert reporting.compare(run / "metrics", target / "metrics")[0]["difference"] == 0  # make compare reads it


def test_publish_refuses_an_incomplete_or_mixed_run(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="03_pretraining did not finish"):
        reference.publish(run, tmp_path / "ref", names=["01_data", "02_augmentation", "03_pretraining"])
    reporting.start("02_augmentation", run / "metrics")
    reporting.complete(profile="full", seed=7, commit=COMMIT, code=CODE, uncommitted_changes=False, cpu=CPU)
    with pytest.raises(ValueError, match="different seeds"):
        reference.publish(run, tmp_path / "ref", names=["01_data", "02_augmentation"])
    assert not (tmp_path / "ref").exists()


def test_publish_refuses_chapters_made_by_different_code(run, tmp_path):
    reporting.start("02_augmentation", run / "metrics")  # re-run later, after a commit that changed the code
    reporting.complete(profile="full", seed=42, commit="f" * 40, code="ddd-bbb-ccc", uncommitted_changes=False, cpu=CPU)
    with pytest.raises(ValueError, match=r"ran different code .*0123456789 \(code aaa-bbb-ccc\): 01_data; "
                                         r"ffffffffff \(code ddd-bbb-ccc\): 02_augmentation"):
        reference.publish(run, tmp_path / "ref", names=["01_data", "02_augmentation"])
    reporting.start("02_augmentation", run / "metrics")  # a marker that records no code version (no git checkout)
    reporting.complete(profile="full", seed=42, commit=None, code=None, uncommitted_changes=None, cpu=CPU)
    with pytest.raises(ValueError, match="02_augmentation completed without a recorded code version"):
        reference.publish(run, tmp_path / "ref", names=["01_data", "02_augmentation"])
    assert not (tmp_path / "ref").exists()
    reporting.start("02_augmentation", run / "metrics")  # after a documentation-only commit: the same code
    reporting.complete(profile="full", seed=42, commit="f" * 40, code=CODE, uncommitted_changes=False, cpu=CPU)
    manifest = json.loads(reference.publish(run, tmp_path / "ref", names=["01_data", "02_augmentation"]).read_text())
    assert manifest["code"] == CODE and manifest["commits"] == [COMMIT, "f" * 40]


def test_a_chapter_run_with_uncommitted_changes_or_on_another_cpu_is_stated(run, tmp_path):
    reporting.start("02_augmentation", run / "metrics")
    reporting.complete(profile="full", seed=42, commit=COMMIT, code=CODE, uncommitted_changes=True, cpu="Other CPU: AVX2 no")
    manifest = json.loads(reference.publish(run, tmp_path / "ref", names=["01_data", "02_augmentation"]).read_text())
    assert manifest["uncommitted_changes"] is True
    assert manifest["machine"]["cpu"] == ["Other CPU: AVX2 no", CPU]
    assert manifest["notebooks"]["02_augmentation"]["cpu"] == "Other CPU: AVX2 no"


def test_chapters_lists_every_notebook():
    assert "04b_llm_synthesis" in reference.chapters() and reference.chapters()[0] == "01_data"


def test_the_readme_section_is_written_from_the_reference_alone(run, tmp_path):
    target = tmp_path / "ref"
    assert "No reference run is published yet" in reference.readme_section(target)
    reporting.start("04_finetuning", run / "metrics")
    for key, value in (("search/test/BM25/ndcg@10", 0.321), ("search/test/BM25/ndcg@10_ci_low", 0.31),
                       ("search/test/BM25/ndcg@10_ci_high", 0.333)):
        reporting.record(key, value)
    reporting.complete(profile="full", seed=42, commit=COMMIT, code=CODE, uncommitted_changes=False, cpu=CPU)
    (run / "04_finetuning.ipynb").write_text(json.dumps({"metadata": {"papermill": {"duration": 6022.0}}, "cells": []}))
    reference.publish(run, target, names=["01_data", "02_augmentation", "04_finetuning"])
    section = reference.readme_section(target)
    assert f"code `{CODE}` (commit {COMMIT[:10]})" in section and CPU in section
    assert "| `02_augmentation` | 44.0 | 3.5 |" in section and "| `04_finetuning` | 100.4 | — |" in section
    assert "| all | 144.9 | |" in section
    assert "### Search" in section and "| BM25 | 0.321 | [0.310, 0.333] |" in section  # the summary's table, one level down

    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{reference.README_BEGIN}\nstale figures\n{reference.README_END}\n\nafter\n")
    assert reference.update_readme(target, readme) and not reference.update_readme(target, readme)
    text = readme.read_text()
    assert "stale figures" not in text and section in text and text.endswith("\n\nafter\n")
    readme.write_text("# a README without the section\n")
    with pytest.raises(ValueError, match="needs one reference-results section"):
        reference.update_readme(target, readme)


def test_the_readme_agrees_with_the_published_reference():
    """The README's reference-results section is what `make publish` writes from reports/reference/ (or, with no
    reference published, the line that says so): a hand edit of either shows here."""
    text = (reference.ROOT / "README.md").read_text()
    begin, end = text.index(reference.README_BEGIN) + len(reference.README_BEGIN), text.index(reference.README_END)
    assert text[begin:end].strip("\n") == reference.readme_section(reference.ROOT / "reports" / "reference")
