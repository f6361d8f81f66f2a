import pytest

from ecomrec import config as C


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(C.DATA_DIR_ENV, str(tmp_path / "env"))
    assert C.resolve_data_dir(tmp_path / "arg") == (tmp_path / "arg").resolve()
    assert C.resolve_data_dir(None) == (tmp_path / "env").resolve()
    monkeypatch.delenv(C.DATA_DIR_ENV)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.setattr(C, "SOURCE_ROOT", tmp_path / "project")
    assert C.resolve_data_dir(None) == (tmp_path / "project" / "data").resolve()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert C.resolve_data_dir(None) == (tmp_path / "shared" / "data").resolve()


def test_unknown_profile():
    with pytest.raises(ValueError, match="smoke"):
        C.get_profile("huge")
    assert C.get_profile("full").search_queries is None


def test_artifact_dir_created_on_demand(tmp_path):
    path = C.artifact_dir(tmp_path / "art", "smoke")
    assert path == tmp_path / "art" / "smoke" and path.is_dir()


def test_resolve_device():
    assert C.resolve_device("auto") in {"cpu", "cuda"}
    assert C.resolve_device("cpu") == "cpu"


def test_the_gpu_profile_is_the_full_one_with_larger_budgets_only():
    from dataclasses import fields

    full, gpu = C.PROFILES["full"], C.PROFILES["gpu"]
    changed = {f.name for f in fields(C.Profile) if getattr(full, f.name) != getattr(gpu, f.name)} - {"name"}
    assert changed == set(C.GPU_BUDGETS) and changed <= set(C.budget_fields())  # same data, same protocol
    for name in changed:
        before, after = getattr(full, name), getattr(gpu, name)
        assert after is None or after > before, name  # None: everything


def test_the_readme_states_the_gpu_budgets_the_code_sets():
    import re
    from pathlib import Path

    readme = (Path(C.SOURCE_ROOT) / "README.md").read_text()
    rows = dict((m.group(1), (m.group(2), m.group(3))) for m in re.finditer(r"^\| `(\w+)` \| ([\w.]+) \| ([\w.]+) \|", readme, re.M))
    stated = {name: rows[name] for name in rows if name in {f for f in C.budget_fields()}}
    assert stated == {name: (str(getattr(C.PROFILES["full"], name)), str(value)) for name, value in C.GPU_BUDGETS.items()}


def test_a_gpu_budget_profile_is_refused_on_a_cpu_before_anything_is_written(tmp_path):
    from ecomrec.notebook import begin

    C.check_device("full", "cpu")
    C.check_device("gpu", "cuda:0")
    with pytest.raises(RuntimeError, match="PROFILE=full"):
        C.check_device("gpu", "cpu")
    with pytest.raises(RuntimeError, match="would take days"):
        begin("03_pretraining", "gpu", 42, "cpu", str(tmp_path / "artifacts"), str(tmp_path / "reports"))
    assert not any(tmp_path.iterdir())
