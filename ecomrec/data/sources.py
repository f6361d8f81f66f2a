"""Where each dataset file comes from, its known checksums, and how a user obtains it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ecomrec.data.errors import ChecksumMismatchError, DataFileMissingError

# A dataset folder may hold this file (written by `ecomrec.data.download` for the files it verified against a
# published checksum): "<sha256>  <name>" lines, for `sha256sum -c`. It is a record, never a source of trust:
# anyone can write a line into it, so `locate` accepts only the published checksums below.
MANIFEST_NAME = "SHA256SUMS"
# Set to 0 to load files no published checksum covers (the original Amazon files you downloaded yourself, the
# tests' small fixture files). The `verify` argument of the loaders overrides it.
VERIFY_ENV = "ECOMREC_VERIFY_CHECKSUMS"


@dataclass(frozen=True)
class DataFile:
    """One input file: its folder and name in the data directory, accepted checksums, and origin."""

    folder: str
    name: str
    sha256: tuple[str, ...]
    how_to_obtain: str
    url: str | None = None

    def path(self, data_dir: Path) -> Path:
        return Path(data_dir) / self.folder / self.name


HOMEDEPOT_TRAIN = DataFile(
    folder="homedepot",
    name="train.csv.zip",
    sha256=("f6699098295f36e20fa76d07884aa453e9005aa97d9d6a6c1ac42c37142da88a",),
    how_to_obtain=(
        "download train.csv.zip of the Kaggle competition 'home-depot-product-search-relevance' "
        "with your own Kaggle account (`python -m ecomrec.data.download homedepot` runs the kaggle CLI)"
    ),
)
OFFICE_REVIEWS = DataFile(
    folder="amazon-office-2014",
    name="reviews_Office_Products_5.json.gz",
    sha256=("fd59a68e5dbfda817a72a66115db1505ef083ca2a1bca502500e88982e20c75a",),
    how_to_obtain="`python -m ecomrec.data.download amazon-office` (McAuley et al. 2014 Amazon product data)",
    url="https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Office_Products_5.json.gz",
)
OFFICE_META = DataFile(
    folder="amazon-office-2014",
    name="meta_Office_Products.json.gz",
    sha256=("d452868b15ad7d2a8be2bc9fa56c697884a4b018c0c7805f94ac9dcb06a76a78",),
    how_to_obtain="`python -m ecomrec.data.download amazon-office` (McAuley et al. 2014 Amazon product data)",
    url="https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/meta_Office_Products.json.gz",
)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, str]:
    """Map file name → sha256 from a folder's SHA256SUMS, or {} when there is none."""
    manifest = Path(folder) / MANIFEST_NAME
    if not manifest.is_file():
        return {}
    entries = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries[name.strip().lstrip("*")] = digest.lower()
    return entries


def verify_by_default() -> bool:
    """Whether loads check checksums when the caller does not say: yes, unless ECOMREC_VERIFY_CHECKSUMS=0."""
    value = os.environ.get(VERIFY_ENV, "1").strip().lower()
    if value not in {"0", "1", "false", "true", "no", "yes"}:
        raise ValueError(f"{VERIFY_ENV}={value!r}: use 1 (verify, the default) or 0")
    return value in {"1", "true", "yes"}


def locate(source: DataFile, data_dir: Path, verify: bool | None = None) -> Path:
    """Path of `source` under `data_dir`, checked to exist and (when `verify`, by default unless
    ECOMREC_VERIFY_CHECKSUMS=0) to match one of its published sha256 checksums."""
    verify = verify_by_default() if verify is None else verify
    path = source.path(data_dir)
    if not path.is_file():
        raise DataFileMissingError(
            f"{path} not found. Expected {source.folder}/{source.name} in the data directory {data_dir} "
            f"(set it with ECOMREC_DATA_DIR or the DATA_DIR parameter). To obtain it: {source.how_to_obtain}."
        )
    if verify:
        actual = sha256_file(path)
        if actual not in source.sha256:
            recorded = read_manifest(path.parent).get(source.name) == actual
            raise ChecksumMismatchError(
                f"{path} has sha256 {actual}, expected one of {sorted(source.sha256)} (published). "
                + (f"{MANIFEST_NAME} lists this checksum, but that is a local record, not a published one. "
                   if recorded else "")
                + f"The file is corrupt or a different release; obtain it again: {source.how_to_obtain}. "
                f"If it is an original you downloaded yourself and trust, load without the check: {VERIFY_ENV}=0."
            )
    return path


# Counts stated in each dataset's PROVENANCE.md; 01_data and tests/data compare the loaded files with them.
PROVENANCE_COUNTS = {
    "homedepot": {"judgments": 74_067, "queries": 11_795, "products": 54_667},
    "amazon-office": {"interactions": 53_258, "users": 4_905, "items": 2_420},
}
