"""What every chapter notebook does first and last: seed, start recording, resolve profile/device/folders and
load the prepared data; at the end, record its wall time and peak memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import pandas as pd

from ecomrec import config as C
from ecomrec import reporting


# Hugging Face libraries read these when they load (transformers' and datasets' bars go through huggingface_hub).
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
             "TRANSFORMERS_VERBOSITY": "error",
             # no "process just got forked" notice when 07 starts the server (same speed here: measured 23.5 s
             # for 3,000 titles either way)
             "TOKENIZERS_PARALLELISM": "false",
             # tqdm reads TQDM_* when it is imported: bars that do not say `disable=` explicitly stay off
             # (sentence-transformers' "Computing widget examples", ...); the course's own bars do say it
             "TQDM_DISABLE": "1"}
# Warnings from inside the libraries about their own internals, harmless here (a learner can do nothing about
# them): (message regex, category).
LIBRARY_WARNINGS = [(r"`is_gradient_checkpointing` is deprecated", FutureWarning),
                    (r"IProgress not found", Warning),
                    # ranx's numba kernels, when they are first compiled in a new environment (ANSI-coloured)
                    (r".*unsafe cast from uint64 to int64", Warning)]


def quiet_libraries() -> None:
    """Keep library noise off the lesson pages: no loading/saving bars from Hugging Face libraries, no
    "IProgress not found" warning from tqdm's notebook detection, transformers' log at errors only. Call it
    before those libraries are imported (the first line of a notebook's import cell); the course's own bars
    (`ecomrec.progress`, on stdout) stay."""
    if "tqdm.std" in sys.modules:
        print("note: tqdm was imported before quiet_libraries(); library progress bars may still show")
    os.environ.update(QUIET_ENV)
    for message, category in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    import logging

    for name in ("sentence_transformers", "transformers", "datasets", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)  # e.g. "Converting SentenceTransformer model … to CrossEncoder"
    if "huggingface_hub" in sys.modules:  # already imported: switch its bars off directly
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
        sys.modules["transformers"].utils.logging.set_verbosity_error()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


class NotebookRun(NamedTuple):
    """One notebook run's settings; unpack it (`profile, device, root, out_dir, frames, start = run`)."""

    profile: C.Profile
    device: str
    root: Path  # this profile's artifact folder
    out_dir: Path | None  # this notebook's own artifact folder (created), if it has one
    frames: dict[str, pd.DataFrame]  # 01's prepared, validated tables
    start: float  # time.perf_counter() at setup, for `finish`


def begin(notebook: str, profile: str, seed: int, device: str, artifact_dir: str, report_dir: str,
          subdir: str | None = None, needs: Sequence[str] = (), deterministic: bool = False) -> NotebookRun:
    """Seed everything, start recording `notebook`'s metrics under `<report_dir>/<profile>/metrics`, and load
    the prepared data. `needs`: earlier notebooks whose artifacts or metrics this one reads; each must have
    completed (run to its last cell) for this profile and seed, else a clear error says what to run.
    `deterministic`: on CUDA, deterministic kernels (`config.make_deterministic`; the DETERMINISTIC parameter)."""
    device = C.resolve_device(device)
    C.check_device(profile, device)  # before anything is written: the gpu profile needs CUDA
    C.set_seeds(seed)
    if deterministic and C.make_deterministic(device):
        print("deterministic CUDA kernels on (slower)")
    metrics_dir = Path(report_dir) / C.get_profile(profile).name / "metrics"
    check_completed(metrics_dir, needs, C.get_profile(profile).name, seed)
    reporting.start(notebook, metrics_dir)
    _parameters.clear()
    _parameters.update(run_identity(profile, seed))
    root = C.artifact_dir(artifact_dir, profile)
    out_dir = None
    if subdir is not None:
        out_dir = root / subdir
        out_dir.mkdir(parents=True, exist_ok=True)
    from ecomrec.data.prepare import load_prepared

    run = NotebookRun(C.get_profile(profile), device, root, out_dir,
                      load_prepared(artifact_dir, profile, seed=seed), time.perf_counter())
    print(f"{notebook}: profile {run.profile.name}, device {run.device}"
          + (f", artifacts → {out_dir}" if out_dir is not None else ""))
    return run


_parameters: dict[str, object] = {}  # this run's, for the completion marker `finish` writes


CODE_PATHS = ("ecomrec", "notebooks", "pyproject.toml")  # what makes a chapter's figures (the README does not)


def run_identity(profile: str, seed: int) -> dict[str, object]:
    """What a completion marker records about a run: profile, seed, the code (`code_version`) and the CPU. `begin`
    keeps it for `finish`; a notebook that does not call `begin` (01) passes it to `reporting.complete` itself."""
    return {"profile": C.get_profile(profile).name, "seed": seed, **code_version(), "cpu": cpu_description()}


def code_version(root: Path = C.SOURCE_ROOT) -> dict[str, object]:
    """Which code a notebook ran: the commit (None outside a git checkout), the git ids of the `CODE_PATHS`
    (`code`: unchanged by a commit that touches only documentation) and whether they had uncommitted changes.
    A notebook's completion marker carries it, so a published reference can say which code made every chapter's
    figures, and refuse chapters made by different code."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)

    unknown = {"commit": None, "code": None, "uncommitted_changes": None}
    try:
        head, trees = git("rev-parse", "HEAD"), git("rev-parse", *(f"HEAD:{path}" for path in CODE_PATHS))
    except OSError:  # no git on this machine
        return unknown
    if head.returncode != 0 or trees.returncode != 0:
        return unknown
    return {"commit": head.stdout.strip(), "code": "-".join(line[:12] for line in trees.stdout.split()),
            "uncommitted_changes": bool(git("status", "--porcelain", "--", *CODE_PATHS).stdout.strip())}


def check_completed(metrics_dir: Path, needs: Sequence[str], profile: str, seed: int) -> None:
    """Raise unless every notebook in `needs` completed under `metrics_dir` with this `seed`."""
    for name in needs:
        done = reporting.completion(metrics_dir, name)
        if done is None:
            raise FileNotFoundError(f"{name} has not completed for profile {profile!r} (it never ran, or its last run "
                                    f"stopped early): run it first (make report PROFILE={profile})")
        if done.get("seed") != seed:
            raise ValueError(f"{name} last completed with seed {done.get('seed')}, this run uses seed {seed}: "
                             f"run it again with SEED={seed} (make report PROFILE={profile} SEED={seed})")


CPU_FEATURES = {"AVX2": "avx2", "AVX-512": "avx512f", "VNNI (int8 dot products)": ("avx512_vnni", "avx_vnni"),
                "AVX512-BF16": "avx512_bf16", "AMX": "amx_tile"}


def cpu_description(cpuinfo: str | None = None) -> str:
    """The CPU model and which of the instruction sets that decide int8 and bfloat16 speed it has, from
    /proc/cpuinfo (Linux; `cpuinfo` is that file's text). Notebooks print it rather than state it, because the
    machine a reader runs on is not the one the prose was written on."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        if not path.is_file():
            import platform

            return f"{platform.processor() or platform.machine()} (instruction sets not listed on {sys.platform})"
        cpuinfo = path.read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith(("flags", "Features"))), []))
    has = {name: any(f in flags for f in ((want,) if isinstance(want, str) else want)) for name, want in CPU_FEATURES.items()}
    return f"{model}: " + ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in has.items())


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
    reporting.complete(**_parameters)
    print(f"wall time {wall / 60:.1f} min; peak resident memory {peak:.2f} GiB")
