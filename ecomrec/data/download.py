"""Fetch the original datasets for users who are not given ../shared/data.

`python -m ecomrec.data.download amazon-office [--data-dir DIR]` downloads the 2014 McAuley files;
`python -m ecomrec.data.download homedepot` runs the Kaggle CLI (the competition needs your account).
Each download is written to a temporary file, checked against the published checksum, then moved into place;
a failed or mismatching download leaves nothing behind. A file verified that way is listed in the folder's
SHA256SUMS (a record for `sha256sum -c`). McAuley's original Amazon files have no published checksum: they
are saved but not trusted, and loading them needs ECOMREC_VERIFY_CHECKSUMS=0 (the message says so).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Collection

from tqdm import tqdm

from ecomrec import config as C
from ecomrec.data.errors import ChecksumMismatchError, DataError
from ecomrec.data.sources import (HOMEDEPOT_TRAIN, MANIFEST_NAME, OFFICE_META, OFFICE_REVIEWS, VERIFY_ENV, DataFile,
                                  sha256_file)
from ecomrec.storage import write_text_atomic

KAGGLE_COMPETITION = "home-depot-product-search-relevance"


def download(url: str, dest: Path, expected_sha256: Collection[str], timeout: float = 60.0) -> Path:
    """Stream `url` to `dest` with a progress bar; atomic on success. `expected_sha256`: the published checksums
    the bytes must match; empty means none is published, and then the file is saved but not recorded as
    trusted (a later verified load refuses it)."""
    if isinstance(expected_sha256, str):
        expected_sha256 = (expected_sha256,)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
        digest = sha256_file(tmp)
        if expected_sha256 and digest not in expected_sha256:
            raise ChecksumMismatchError(f"{url} downloaded with sha256 {digest}, expected one of {sorted(expected_sha256)}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    if expected_sha256:
        record_checksum(dest)
    else:
        print(f"{dest}: sha256 {digest}. No published checksum covers this file, so it is not recorded as "
              f"trusted; load it with {VERIFY_ENV}=0 if you trust its origin ({url}).")
    return dest


def record_checksum(path: Path) -> None:
    """Add or replace `path`'s line in the SHA256SUMS of its folder."""
    manifest = path.parent / MANIFEST_NAME
    lines = [ln for ln in (manifest.read_text().splitlines() if manifest.exists() else [])
             if ln.strip() and ln.split(maxsplit=1)[1].strip() != path.name]
    lines.append(f"{sha256_file(path)}  {path.name}")
    write_text_atomic(manifest, "\n".join(sorted(lines, key=lambda ln: ln.split(maxsplit=1)[1])) + "\n")


def download_amazon_office(data_dir: Path, base_url: str | None = None) -> list[Path]:
    """Download the Office 5-core ratings and the Office meta file (originals, so checksums are recorded)."""
    paths = []
    for source in (OFFICE_REVIEWS, OFFICE_META):
        url = source.url if base_url is None else f"{base_url.rstrip('/')}/{source.name}"
        # source.sha256 is the course's mirror of the 5-core subset; McAuley's originals differ from it and
        # have no published checksum, so nothing is trusted on arrival
        paths.append(download(url, source.path(data_dir), expected_sha256=()))
    return paths


def download_homedepot(data_dir: Path, source: DataFile = HOMEDEPOT_TRAIN) -> Path:
    """Run `kaggle competitions download` for train.csv.zip (needs the kaggle CLI and accepted rules)."""
    kaggle = shutil.which("kaggle")
    if kaggle is None:
        raise DataError(
            "the Home Depot data needs a Kaggle account: `pip install kaggle`, put your API token in "
            f"~/.kaggle/kaggle.json, accept the rules of '{KAGGLE_COMPETITION}', then run this again "
            f"(or save train.csv.zip by hand as {source.path(data_dir)})")
    dest = source.path(data_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # into a private folder first: a failed or wrong download never lands where loads look
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".kaggle-") as tmp:
        done = subprocess.run([kaggle, "competitions", "download", "-c", KAGGLE_COMPETITION, "-f", source.name,
                               "-p", tmp], capture_output=True, text=True)
        got = Path(tmp) / source.name
        if done.returncode != 0 or not got.is_file():
            raise DataError(f"kaggle could not download {source.name} (exit {done.returncode}): "
                            f"{(done.stderr or done.stdout).strip()[-500:]}")
        digest = sha256_file(got)
        if digest not in source.sha256:
            raise ChecksumMismatchError(f"{source.name} from kaggle has sha256 {digest}, not the known archive "
                                        f"{sorted(source.sha256)}; nothing was saved")
        os.replace(got, dest)
    record_checksum(dest)
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["amazon-office", "homedepot"])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    root = Path(args.data_dir) if args.data_dir else C.resolve_data_dir(None)
    paths = download_amazon_office(root) if args.dataset == "amazon-office" else [download_homedepot(root)]
    for path in paths:
        print(f"saved {path}")


if __name__ == "__main__":
    main()
