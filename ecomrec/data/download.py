"""Fetch the original datasets for users who are not given ../shared/data.

`python -m ecomrec.data.download amazon-office [--data-dir DIR]` downloads the 2014 McAuley files;
`python -m ecomrec.data.download homedepot` runs the Kaggle CLI (the competition needs your account).
Each download is written to a temporary file, checked, then moved into place, and its sha256 is added to
the folder's SHA256SUMS so that later loads verify the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ecomrec import config as C
from ecomrec.data.errors import ChecksumMismatchError, DataError
from ecomrec.data.sources import HOMEDEPOT_TRAIN, MANIFEST_NAME, OFFICE_META, OFFICE_REVIEWS, DataFile, sha256_file

KAGGLE_COMPETITION = "home-depot-product-search-relevance"


def download(url: str, dest: Path, expected_sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Stream `url` to `dest` with a progress bar; verify `expected_sha256` when given; atomic on success."""
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
        if expected_sha256 is not None and digest != expected_sha256:
            raise ChecksumMismatchError(f"{url} downloaded with sha256 {digest}, expected {expected_sha256}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    record_checksum(dest)
    return dest


def record_checksum(path: Path) -> None:
    """Add or replace `path`'s line in the SHA256SUMS of its folder."""
    manifest = path.parent / MANIFEST_NAME
    lines = [ln for ln in (manifest.read_text().splitlines() if manifest.exists() else [])
             if ln.strip() and ln.split(maxsplit=1)[1].strip() != path.name]
    lines.append(f"{sha256_file(path)}  {path.name}")
    manifest.write_text("\n".join(sorted(lines, key=lambda ln: ln.split(maxsplit=1)[1])) + "\n")


def download_amazon_office(data_dir: Path, base_url: str | None = None) -> list[Path]:
    """Download the Office 5-core ratings and the Office meta file (originals, so checksums are recorded)."""
    paths = []
    for source in (OFFICE_REVIEWS, OFFICE_META):
        url = source.url if base_url is None else f"{base_url.rstrip('/')}/{source.name}"
        paths.append(download(url, source.path(data_dir)))
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
    subprocess.run([kaggle, "competitions", "download", "-c", KAGGLE_COMPETITION, "-f", source.name,
                    "-p", str(dest.parent)], check=True)
    if sha256_file(dest) not in source.sha256:
        raise ChecksumMismatchError(f"{dest}: sha256 {sha256_file(dest)} differs from the known archive {source.sha256}")
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
