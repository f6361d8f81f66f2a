import hashlib

import pytest

from ecomrec.data.errors import ChecksumMismatchError, DataFileMissingError
from ecomrec.data.sources import MANIFEST_NAME, VERIFY_ENV, DataFile, locate, read_manifest, sha256_file

SOURCE = DataFile(folder="ds", name="f.bin", sha256=(hashlib.sha256(b"right").hexdigest(),),
                  how_to_obtain="ask the course team")


def test_sha256_file(tmp_path):
    (tmp_path / "x").write_bytes(b"abc" * 1000)
    assert sha256_file(tmp_path / "x", chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_missing_file_names_path_and_remedy(tmp_path):
    with pytest.raises(DataFileMissingError) as err:
        locate(SOURCE, tmp_path)
    text = str(err.value)
    assert str(tmp_path / "ds" / "f.bin") in text and "ask the course team" in text and "ECOMREC_DATA_DIR" in text


def test_known_checksum_passes_and_wrong_one_fails(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "f.bin").write_bytes(b"right")
    assert locate(SOURCE, tmp_path) == tmp_path / "ds" / "f.bin"
    (tmp_path / "ds" / "f.bin").write_bytes(b"wrong")
    with pytest.raises(ChecksumMismatchError) as err:
        locate(SOURCE, tmp_path)
    assert SOURCE.sha256[0] in str(err.value) and hashlib.sha256(b"wrong").hexdigest() in str(err.value)
    assert locate(SOURCE, tmp_path, verify=False).exists()


def test_a_sha256sums_entry_is_no_source_of_trust(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "f.bin").write_bytes(b"anything at all")
    (tmp_path / "ds" / MANIFEST_NAME).write_text(f"{hashlib.sha256(b'anything at all').hexdigest()}  f.bin\n")
    assert read_manifest(tmp_path / "ds") == {"f.bin": hashlib.sha256(b"anything at all").hexdigest()}
    with pytest.raises(ChecksumMismatchError, match="local record, not a published one.*ECOMREC_VERIFY_CHECKSUMS=0"):
        locate(SOURCE, tmp_path)


def test_verification_follows_the_environment_unless_told(tmp_path, monkeypatch):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "f.bin").write_bytes(b"unpublished")
    monkeypatch.setenv(VERIFY_ENV, "0")
    assert locate(SOURCE, tmp_path).name == "f.bin"
    with pytest.raises(ChecksumMismatchError):
        locate(SOURCE, tmp_path, verify=True)  # an explicit argument wins
    monkeypatch.setenv(VERIFY_ENV, "maybe")
    with pytest.raises(ValueError, match="use 1"):
        locate(SOURCE, tmp_path)
