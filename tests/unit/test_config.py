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
