"""Record the figures a notebook states, and render the report index.

Keys are `<task>/<split>/<method>/<metric>` (at least three segments, e.g. `data/homedepot/judgments`,
`search/test/bm25/ndcg@10`). A notebook calls `start()` once, then `record()` for every figure its prose
states; values land in `<metrics_dir>/<notebook>.json`, which tests and the index page read. Its last cell
calls `complete()`, which writes `<metrics_dir>/<notebook>.complete`: a later notebook accepts this one's
outputs only when that marker exists (`start` removes it, so a run that stopped early leaves none).
Every write is atomic (`ecomrec.storage`).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import numbers
import re
from pathlib import Path

from ecomrec.storage import write_json_atomic, write_text_atomic

_KEY = re.compile(r"^[A-Za-z0-9_.@+\-]+(/[A-Za-z0-9_.@+\-]+){2,}$")
COMPLETE_SUFFIX = ".complete"
NAMES_SUFFIX = ".names.json"
_current: Path | None = None
_names: dict[str, str] = {}  # the current notebook's display names, as last written to its names file


def start(notebook: str, metrics_dir: str | Path) -> Path:
    """Begin recording for `notebook` into `<metrics_dir>/<notebook>.json`, discarding an older run's file."""
    global _current, _names
    path = Path(metrics_dir) / f"{notebook}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(COMPLETE_SUFFIX).unlink(missing_ok=True)  # until this run completes, it has not
    path.with_suffix(NAMES_SUFFIX).unlink(missing_ok=True)
    write_json_atomic(path, {})
    _current, _names = path, {}
    return path


def complete(**parameters: object) -> Path:
    """Mark the current notebook's run as finished (its last cell), with the parameters it ran under."""
    if _current is None:
        raise RuntimeError("call ecomrec.reporting.start(notebook, metrics_dir) before complete()")
    return write_json_atomic(_current.with_suffix(COMPLETE_SUFFIX), {"notebook": _current.stem, **parameters})


def completion(metrics_dir: str | Path, notebook: str) -> dict | None:
    """The parameters `notebook` last completed with under `metrics_dir`, or None when it has not completed."""
    path = Path(metrics_dir) / f"{notebook}{COMPLETE_SUFFIX}"
    return json.loads(path.read_text()) if path.is_file() else None


def record(key: str, value: float | int) -> float | int:
    """Store one finite number under a `<task>/<split>/<method>/<metric>` key and return it."""
    if _current is None:
        raise RuntimeError("call ecomrec.reporting.start(notebook, metrics_dir) before record()")
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"bad metric key {key!r}: expected '<task>/<split>/<method>/<metric>' path segments")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"metric {key!r} must be a finite number, got {value!r}")
    value = int(value) if isinstance(value, numbers.Integral) else float(value)
    metrics = json.loads(_current.read_text())
    metrics[key] = value
    write_json_atomic(_current, metrics)
    return value


def metric_key(name: str) -> str:
    """A system's display name as one key segment: "MiniLM + MNRL, LoRA" → "MiniLM_plus_MNRL_LoRA",
    "BM25 → cross-encoder" → "BM25_to_cross-encoder". While a notebook records, the name is remembered in
    `<notebook>.names.json` beside its metrics, so the summary and the index call the system what the notebook
    calls it (`load_names`)."""
    key = re.sub(r"[^A-Za-z0-9@.-]+", "_", name.replace("+", "plus").replace("→", "to")).strip("_")
    if not key:
        raise ValueError(f"{name!r} has no letters or digits to make a key of")
    if _current is not None and key != name and _names.get(key) != name:  # written only when new
        _names[key] = name
        write_json_atomic(_current.with_suffix(NAMES_SUFFIX), _names)
    return key


def load_names(metrics_dir: str | Path) -> dict[str, str]:
    """Key segment → display name, as the notebooks under `metrics_dir` named their systems (`metric_key`)."""
    names: dict[str, str] = {}
    for path in sorted(Path(metrics_dir).glob(f"*{NAMES_SUFFIX}")):
        names.update(json.loads(path.read_text()))
    return names


def load_metrics(metrics_dir: str | Path) -> dict[str, dict[str, float]]:
    """Map notebook name → its recorded metrics, for every metrics file in `metrics_dir`."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(metrics_dir).glob("*.json"))
            if not p.name.endswith(NAMES_SUFFIX)}


def _fmt(value: float | int) -> str:
    return f"{value:,d}" if isinstance(value, int) else f"{value:.4g}"


def _title(page: Path) -> str:
    """The first heading of an executed notebook beside its HTML page ("01 · Data: …"), or "" when none."""
    notebook = page.with_suffix(".ipynb")
    if not notebook.is_file():
        return ""
    for cell in json.loads(notebook.read_text()).get("cells", []):
        if cell.get("cell_type") == "markdown":
            match = re.search(r"^#\s+(.+)$", "".join(cell.get("source", [])), re.M)
            return match.group(1).strip() if match else ""
    return ""


def build_index(report_dir: str | Path) -> Path:
    """Write `<report_dir>/index.html`: a link to every rendered notebook, the headline figures, the summary as
    HTML tables, and every recorded metric."""
    from markdown_it import MarkdownIt

    from ecomrec.summary import headline_figures

    report_dir = Path(report_dir)
    metrics = load_metrics(report_dir / "metrics")
    pages = sorted(p.stem for p in report_dir.glob("[0-9][0-9]*_*.html"))  # 04b_… too
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ecomrec report — {esc(report_dir.name)}</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}td.n{text-align:right}"
             "img{max-width:100%}</style></head><body>",
             f"<h1>ecomrec report — profile <code>{esc(report_dir.name)}</code></h1><h2>Notebooks</h2><ul>"]
    for p in pages:
        title = _title(report_dir / f"{p}.html")
        parts.append(f"<li><a href='{esc(p)}.html'>{esc(p)}</a>{' — ' + esc(title) if title else ''} "
                     f"(<a href='{esc(p)}.ipynb'>ipynb</a>)</li>")
    parts.append("</ul>")
    figures = headline_figures(metrics, report_dir / "figures", load_names(report_dir / "metrics"))
    if figures:
        parts.append("<h2>Headline figures</h2>")
        parts += [f"<p><img src='figures/{esc(f.name)}' alt='{esc(f.stem)}'></p>" for f in figures]
    summary = report_dir / "summary.md"
    if summary.is_file():  # written by 06_evaluation from the recorded metrics (ecomrec.summary)
        rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(summary.read_text())
        parts.append(f"<h2>Summary (<a href='summary.md'>summary.md</a>)</h2>{rendered}")
    parts.append("<h2>Recorded metrics</h2>")
    for notebook, values in metrics.items():
        parts.append(f"<h3>{esc(notebook)}</h3><table><tr><th>key</th><th>value</th></tr>")
        parts += [f"<tr><td><code>{esc(k)}</code></td><td class='n'>{_fmt(v)}</td></tr>" for k, v in values.items()]
        parts.append("</table>")
    parts.append("</body></html>\n")
    return write_text_atomic(report_dir / "index.html", "\n".join(parts))


def compare(run_dir: str | Path, reference_dir: str | Path) -> list[dict]:
    """Every metric recorded in a run's and in a reference's metrics folder, side by side: one dict per
    (notebook, key) with `run`, `reference` (None where one side lacks it) and `difference` (run − reference),
    largest relative difference first, keys only one side has last."""
    for folder in (run_dir, reference_dir):
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder} is not a metrics folder: run `make report` (or name the right profile)")
    run, reference = load_metrics(run_dir), load_metrics(reference_dir)
    rows = []
    for notebook in sorted(set(run) | set(reference)):
        ours, theirs = run.get(notebook, {}), reference.get(notebook, {})
        for key in sorted(set(ours) | set(theirs)):
            a, b = ours.get(key), theirs.get(key)
            rows.append({"notebook": notebook, "key": key, "run": a, "reference": b,
                         "difference": None if a is None or b is None else a - b})
    def order(row):
        if row["difference"] is None:
            return (1, 0.0)
        return (0, -abs(row["difference"]) / max(abs(row["reference"]), 1e-12))
    return sorted(rows, key=order)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render the report index page, or compare a run with the reference.")
    parser.add_argument("command", choices=["index", "compare"])
    parser.add_argument("report_dir", help="index: the report folder; compare: the run's metrics folder")
    parser.add_argument("reference_dir", nargs="?", help="compare: the reference's metrics folder")
    parser.add_argument("--top", type=int, default=40, help="compare: how many of the largest differences to print")
    args = parser.parse_args(argv)
    if args.command == "index":
        print(f"wrote {build_index(args.report_dir)}")
        return
    if args.reference_dir is None:
        parser.error("compare needs the reference's metrics folder")
    rows = compare(args.report_dir, args.reference_dir)
    both = [r for r in rows if r["difference"] is not None]
    one_side = [r for r in rows if r["difference"] is None]
    print(f"{len(both):,} metrics in both; {sum(r['reference'] is None for r in one_side):,} only in the run, "
          f"{sum(r['run'] is None for r in one_side):,} only in the reference. Largest relative differences:")
    for r in both[:args.top]:
        print(f"  {r['notebook']:<26} {r['key']:<70} run {_fmt(r['run']):>12}  reference {_fmt(r['reference']):>12}  "
              f"Δ {r['difference']:+.4g}")


if __name__ == "__main__":
    main()
