"""Publish one complete run as the course's reference results (`reports/reference/`).

`publish(report_dir, reference_dir)` copies a finished run's recorded metrics (`metrics/*.json`, with the
names file of each notebook) and its `summary.md`, and writes `manifest.json`: the code it ran (commit, and
whether the code had uncommitted changes), the date, the machine (CPU model and instruction sets, cores,
memory), and per notebook its wall time (papermill's own measurement, in the executed `.ipynb`) and peak
memory (recorded by `notebook.finish`). It refuses a run that is not complete: every chapter in
`notebooks/` must have finished under the report's metrics folder, all with one seed and the same code (each
chapter's completion marker records the commit and the git ids of the package, the notebooks and
`pyproject.toml`: `notebook.code_version`), so chapters run one at a time, even across days, publish only when
one version of the code made all of them.

`make publish PROFILE=full` runs it; `make compare` then prints any later run against it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from ecomrec import reporting
from ecomrec.storage import atomic_path, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


def chapters(notebooks_dir: Path = ROOT / "notebooks") -> list[str]:
    """Every chapter of the course, in order (`01_data`, …, `04b_…`, …)."""
    return sorted(p.stem for p in Path(notebooks_dir).glob("[0-9][0-9]*_*.py"))


def _memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def notebook_costs(report_dir: Path, names: list[str]) -> dict[str, dict]:
    """Per notebook: papermill's wall time of the executed notebook (minutes) and the peak memory it recorded."""
    metrics = reporting.load_metrics(report_dir / "metrics")
    costs = {}
    for name in names:
        executed = json.loads((report_dir / f"{name}.ipynb").read_text())
        duration = executed.get("metadata", {}).get("papermill", {}).get("duration")
        if duration is None:
            raise ValueError(f"{report_dir / name}.ipynb carries no papermill duration: was it executed by `make report`?")
        peak = next((v for k, v in metrics.get(name, {}).items() if k.endswith("/all/notebook/peak_memory_gib")), None)
        costs[name] = {"wall_minutes": round(duration / 60, 2), "peak_memory_gib": None if peak is None else round(peak, 2)}
    return costs


def publish(report_dir: str | Path, reference_dir: str | Path, names: list[str] | None = None) -> Path:
    """Copy a complete run into `reference_dir` (replacing what was there) and write its manifest."""
    report_dir, reference_dir = Path(report_dir), Path(reference_dir)
    names = chapters() if names is None else names
    metrics_dir = report_dir / "metrics"
    done = {name: reporting.completion(metrics_dir, name) for name in names}
    missing = [name for name, marker in done.items() if marker is None]
    if missing:
        raise FileNotFoundError(f"not a complete run: {', '.join(missing)} did not finish under {metrics_dir} "
                                f"(run `make report PROFILE={report_dir.name}` first)")
    seeds = {marker.get("seed") for marker in done.values()}
    if len(seeds) != 1:
        raise ValueError(f"the notebooks of {report_dir} ran with different seeds {sorted(map(str, seeds))}: re-run them")
    codes = {name: marker.get("code") for name, marker in done.items()}
    unknown = [name for name, code in codes.items() if code is None]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} completed without a recorded code version (outside a git checkout, "
                         "or before markers carried one): re-run them in a checkout")
    if len(set(codes.values())) != 1:
        by_code = {}
        for name, code in codes.items():
            by_code.setdefault(f"{done[name].get('commit', '')[:10]} (code {code})", []).append(name)
        raise ValueError("not one run: the chapters ran different code ("
                         + "; ".join(f"{version}: {', '.join(names)}" for version, names in by_code.items())
                         + "): re-run the older ones")
    costs = notebook_costs(report_dir, names)
    for name, marker in done.items():
        costs[name]["cpu"] = marker.get("cpu", "not recorded")
    cpus = sorted({cost["cpu"] for cost in costs.values()})
    manifest = {
        "profile": report_dir.name, "seed": seeds.pop(),
        # the code every chapter ran, from their completion markers: the ids of notebook.CODE_PATHS, and the commits
        # checked out (several when a documentation-only commit came between two chapters)
        "code": next(iter(codes.values())), "commits": sorted({marker["commit"] for marker in done.values()}),
        "uncommitted_changes": any(marker.get("uncommitted_changes") for marker in done.values()),
        "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # the CPU each chapter ran on, from its marker (chapters re-run on another day may have run on another host)
        "machine": {"cpu": cpus[0] if len(cpus) == 1 else cpus, "cores": os.cpu_count(), "memory_gib": _memory_gib()},
        "notebooks": costs,
        "total_wall_minutes": round(sum(c["wall_minutes"] for c in costs.values()), 1),
    }
    with atomic_path(reference_dir) as tmp:  # a reader never sees half a reference
        tmp.mkdir(parents=True)
        (tmp / "metrics").mkdir()
        for path in sorted(metrics_dir.glob("*.json")):  # metrics and the names each notebook gave its systems
            shutil.copy2(path, tmp / "metrics" / path.name)
        if (report_dir / "summary.md").is_file():
            shutil.copy2(report_dir / "summary.md", tmp / "summary.md")
        write_json_atomic(tmp / "manifest.json", manifest)
    return reference_dir / "manifest.json"


README_BEGIN = "<!-- reference results: written by `make publish` from reports/reference/ (ecomrec.reference); do not edit -->"
README_END = "<!-- end of reference results -->"


def readme_section(reference_dir: str | Path) -> str:
    """The README's reference-results section, from the published files alone: the manifest's code, machine and
    per-chapter wall time and peak memory, then the summary's search, data-efficiency, recommendation and serving
    tables (`ecomrec.summary`), so no figure in it is typed by hand. Without a reference, a line that says so."""
    from ecomrec import summary

    reference_dir = Path(reference_dir)
    manifest_path = reference_dir / "manifest.json"
    if not manifest_path.is_file():
        return ("No reference run is published yet (`reports/reference/` holds none): the figures quoted elsewhere in "
                "this README come from the runs they name.")
    manifest = json.loads(manifest_path.read_text())
    cpu = manifest["machine"]["cpu"]
    per_chapter_cpu = not isinstance(cpu, str)  # chapters run on different CPUs: a column names each one's
    lines = [f"The published reference (`reports/reference/`): profile `{manifest['profile']}`, seed {manifest['seed']}, "
             f"code `{manifest['code']}` (commit {', '.join(c[:10] for c in manifest['commits'])}"
             f"{', with uncommitted changes' if manifest['uncommitted_changes'] else ''}), published "
             f"{manifest['published'][:10]}, {manifest['machine']['cores']} cores, "
             f"{'several CPUs (per chapter below)' if per_chapter_cpu else cpu}.", "",
             "| notebook | wall time (min) | peak memory (GiB) |" + (" CPU |" if per_chapter_cpu else ""),
             "|---|---|---|" + ("---|" if per_chapter_cpu else "")]
    for name, cost in manifest["notebooks"].items():
        peak = "—" if cost["peak_memory_gib"] is None else f"{cost['peak_memory_gib']:.1f}"
        lines.append(f"| `{name}` | {cost['wall_minutes']:.1f} | {peak} |" + (f" {cost['cpu']} |" if per_chapter_cpu else ""))
    lines += [f"| all | {manifest['total_wall_minutes']:.1f} | |" + (" |" if per_chapter_cpu else ""), ""]
    recorded = reporting.load_metrics(reference_dir / "metrics")
    names = reporting.load_names(reference_dir / "metrics")
    lines += [("#" + line) if line.startswith("## ") else line for line in summary.headline_sections(recorded, names)]
    return "\n".join(lines).rstrip()


def update_readme(reference_dir: str | Path, readme: str | Path = ROOT / "README.md") -> bool:
    """Rewrite the README's reference-results section (between `README_BEGIN` and `README_END`) from the reference;
    returns whether the file changed."""
    readme = Path(readme)
    text = readme.read_text()
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1 or text.index(README_BEGIN) > text.index(README_END):
        raise ValueError(f"{readme} needs one reference-results section: a line {README_BEGIN!r}, then {README_END!r}")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    new = f"{head}{README_BEGIN}\n{readme_section(reference_dir)}\n{README_END}{tail}"
    if new != text:
        from ecomrec.storage import write_text_atomic

        write_text_atomic(readme, new)
    return new != text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Publish a complete run as the reference results.")
    parser.add_argument("report_dir", help="the run's report folder, e.g. reports/full")
    parser.add_argument("reference_dir", help="where the reference goes, e.g. reports/reference")
    parser.add_argument("--readme", help="also rewrite this README's reference-results section from it")
    args = parser.parse_args(argv)
    manifest = publish(args.report_dir, args.reference_dir)
    data = json.loads(manifest.read_text())
    if args.readme:
        update_readme(args.reference_dir, args.readme)
    print(f"wrote {manifest}: code {data['code']} (commit {', '.join(c[:10] for c in data['commits'])})"
          f"{' with uncommitted changes' if data['uncommitted_changes'] else ''}, "
          f"{data['total_wall_minutes']} min in all on {data['machine']['cpu']}")


if __name__ == "__main__":
    main()
