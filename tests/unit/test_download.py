import hashlib

import pytest

from fixture_files import write_office
from ecomrec.data import download as dl
from ecomrec.data.amazon import load_office
from ecomrec.data.errors import ChecksumMismatchError, DataError
from ecomrec.data.sources import MANIFEST_NAME, read_manifest


def test_download_file_url_records_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    dest = dl.download(src.as_uri(), tmp_path / "out" / "file.bin", expected_sha256=hashlib.sha256(b"payload" * 1000).hexdigest())
    assert dest.read_bytes() == src.read_bytes()
    assert read_manifest(dest.parent) == {"file.bin": hashlib.sha256(src.read_bytes()).hexdigest()}


def test_wrong_checksum_leaves_nothing_behind(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    with pytest.raises(ChecksumMismatchError):
        dl.download(src.as_uri(), tmp_path / "out" / "file.bin", expected_sha256="0" * 64)
    assert not any((tmp_path / "out").iterdir())


def test_record_checksum_replaces_an_entry(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"one")
    dl.record_checksum(path)
    path.write_bytes(b"two")
    dl.record_checksum(path)
    assert (tmp_path / MANIFEST_NAME).read_text().count(" f") == 1
    assert read_manifest(tmp_path)["f"] == hashlib.sha256(b"two").hexdigest()


def test_amazon_download_then_load_end_to_end(tmp_path):
    mirror = tmp_path / "mirror"
    write_office(mirror)  # original formats: review JSON with text, meta as Python literals
    data_dir = tmp_path / "data"
    paths = dl.download_amazon_office(data_dir, base_url=mirror.as_uri())
    assert [p.name for p in paths] == ["reviews_Office_Products_5.json.gz", "meta_Office_Products.json.gz"]
    office = load_office(data_dir)  # verifies against the SHA256SUMS the download wrote
    assert len(office.interactions) == 36


def test_homedepot_without_kaggle_cli_explains(tmp_path, monkeypatch):
    monkeypatch.setattr(dl.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="Kaggle account"):
        dl.download_homedepot(tmp_path)
