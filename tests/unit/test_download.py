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


def test_a_download_without_a_published_checksum_is_not_recorded_as_trusted(tmp_path, capsys):
    src = tmp_path / "src.bin"
    src.write_bytes(b"whatever arrived")
    dest = dl.download(src.as_uri(), tmp_path / "out" / "file.bin", expected_sha256=())
    assert dest.read_bytes() == b"whatever arrived"
    assert not (dest.parent / MANIFEST_NAME).exists()
    assert "not recorded as trusted" in capsys.readouterr().out


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
    assert not (paths[0].parent / MANIFEST_NAME).exists()  # the originals have no published checksum
    with pytest.raises(ChecksumMismatchError):  # so a verified load refuses them ...
        load_office(data_dir)
    office = load_office(data_dir, verify=False)  # ... and loads them only when told to trust them
    assert len(office.interactions) == 36


def _fake_kaggle(tmp_path, body: bytes, exit_code: int = 0):
    """A `kaggle` executable that writes `body` as the requested file into its -p folder, then exits."""
    script = tmp_path / "kaggle"
    script.write_text("#!/usr/bin/env python3\nimport sys, pathlib\n"
                      "args = sys.argv; folder = pathlib.Path(args[args.index('-p') + 1])\n"
                      f"(folder / args[args.index('-f') + 1]).write_bytes({body!r})\n"
                      f"sys.exit({exit_code})\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("body, exit_code, error", [(b"not the archive", 0, ChecksumMismatchError),
                                                    (b"partial", 1, DataError)])
def test_a_failed_homedepot_download_leaves_nothing_in_place(tmp_path, monkeypatch, body, exit_code, error):
    monkeypatch.setattr(dl.shutil, "which", lambda name: _fake_kaggle(tmp_path, body, exit_code))
    data_dir = tmp_path / "data"
    with pytest.raises(error):
        dl.download_homedepot(data_dir)
    assert list((data_dir / "homedepot").iterdir()) == []  # no file, no temporary folder, no SHA256SUMS


def test_homedepot_download_of_the_published_archive_is_kept(tmp_path, monkeypatch):
    from ecomrec.data.sources import DataFile

    source = DataFile(folder="homedepot", name="train.csv.zip", sha256=(hashlib.sha256(b"the archive").hexdigest(),),
                      how_to_obtain="kaggle")
    monkeypatch.setattr(dl.shutil, "which", lambda name: _fake_kaggle(tmp_path, b"the archive"))
    dest = dl.download_homedepot(tmp_path / "data", source)
    assert dest.read_bytes() == b"the archive" and read_manifest(dest.parent) == {"train.csv.zip": source.sha256[0]}


def test_homedepot_without_kaggle_cli_explains(tmp_path, monkeypatch):
    monkeypatch.setattr(dl.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="Kaggle account"):
        dl.download_homedepot(tmp_path)
