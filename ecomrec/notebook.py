"""What every chapter notebook does first and last: seed, start recording, resolve profile/device/folders and
load the prepared data; at the end, record its wall time and peak memory."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import pandas as pd

from ecomrec import config as C
from ecomrec import reporting


class NotebookRun(NamedTuple):
    """One notebook run's settings; unpack it (`profile, device, root, out_dir, frames, start = run`)."""

    profile: C.Profile
    device: str
    root: Path  # this profile's artifact folder
    out_dir: Path | None  # this notebook's own artifact folder (created), if it has one
    frames: dict[str, pd.DataFrame]  # 01's prepared, validated tables
    start: float  # time.perf_counter() at setup, for `finish`


def begin(notebook: str, profile: str, seed: int, device: str, artifact_dir: str, report_dir: str,
          subdir: str | None = None, needs: Sequence[str] = ()) -> NotebookRun:
    """Seed everything, start recording `notebook`'s metrics under `<report_dir>/<profile>/metrics`, and load
    the prepared data. `needs`: earlier notebooks whose recorded metrics this one reads (a clear error if
    they have not run for this profile)."""
    C.set_seeds(seed)
    metrics_dir = Path(report_dir) / C.get_profile(profile).name / "metrics"
    missing = [name for name in needs if not (metrics_dir / f"{name}.json").is_file()]
    if missing:
        raise FileNotFoundError(f"run {missing} for profile {profile!r} first (make report PROFILE={profile})")
    reporting.start(notebook, metrics_dir)
    root = C.artifact_dir(artifact_dir, profile)
    out_dir = None
    if subdir is not None:
        out_dir = root / subdir
        out_dir.mkdir(parents=True, exist_ok=True)
    from ecomrec.data.prepare import load_prepared

    run = NotebookRun(C.get_profile(profile), C.resolve_device(device), root, out_dir,
                      load_prepared(artifact_dir, profile), time.perf_counter())
    print(f"{notebook}: profile {run.profile.name}, device {run.device}"
          + (f", artifacts → {out_dir}" if out_dir is not None else ""))
    return run


def peak_memory_gib() -> float:
    """This process's peak resident memory (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def finish(task: str, start: float) -> None:
    """Record `<task>/all/notebook/seconds` and `.../peak_memory_gib` and print them (the notebook's last
    code cell before its recorded results; returns nothing, so the cell shows only the printed line)."""
    wall, peak = time.perf_counter() - start, peak_memory_gib()
    reporting.record(f"{task}/all/notebook/seconds", wall)
    reporting.record(f"{task}/all/notebook/peak_memory_gib", peak)
    print(f"wall time {wall / 60:.1f} min; peak resident memory {peak:.2f} GiB")
