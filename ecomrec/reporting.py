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
_current: Path | None = None


def start(notebook: str, metrics_dir: str | Path) -> Path:
    """Begin recording for `notebook` into `<metrics_dir>/<notebook>.json`, discarding an older run's file."""
    global _current
    path = Path(metrics_dir) / f"{notebook}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(COMPLETE_SUFFIX).unlink(missing_ok=True)  # until this run completes, it has not
    write_json_atomic(path, {})
    _current = path
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
    "BM25 → cross-encoder" → "BM25_to_cross-encoder"."""
    key = re.sub(r"[^A-Za-z0-9@.-]+", "_", name.replace("+", "plus").replace("→", "to")).strip("_")
    if not key:
        raise ValueError(f"{name!r} has no letters or digits to make a key of")
    return key


def load_metrics(metrics_dir: str | Path) -> dict[str, dict[str, float]]:
    """Map notebook name → its recorded metrics, for every JSON file in `metrics_dir`."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(metrics_dir).glob("*.json"))}


def _fmt(value: float | int) -> str:
    return f"{value:,d}" if isinstance(value, int) else f"{value:.4g}"


def build_index(report_dir: str | Path) -> Path:
    """Write `<report_dir>/index.html`: a link to every rendered notebook and its recorded metrics."""
    report_dir = Path(report_dir)
    metrics = load_metrics(report_dir / "metrics")
    pages = sorted(p.stem for p in report_dir.glob("[0-9][0-9]*_*.html"))  # 04b_… too
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ecomrec report — {esc(report_dir.name)}</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}td.n{text-align:right}</style></head><body>",
             f"<h1>ecomrec report — profile <code>{esc(report_dir.name)}</code></h1><h2>Notebooks</h2><ul>"]
    parts += [f"<li><a href='{esc(p)}.html'>{esc(p)}</a> (<a href='{esc(p)}.ipynb'>ipynb</a>)</li>" for p in pages]
    parts.append("</ul>")
    summary = report_dir / "summary.md"
    if summary.is_file():  # written by 06_evaluation: the final tables, in Markdown, shown as HTML tables
        from markdown_it import MarkdownIt

        rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(summary.read_text())
        parts.append(f"<h2>Summary (<a href='summary.md'>summary.md</a>)</h2>{rendered}")
    parts.append("<h2>Recorded metrics</h2>")
    for notebook, values in metrics.items():
        parts.append(f"<h3>{esc(notebook)}</h3><table><tr><th>key</th><th>value</th></tr>")
        parts += [f"<tr><td><code>{esc(k)}</code></td><td class='n'>{_fmt(v)}</td></tr>" for k, v in values.items()]
        parts.append("</table>")
    parts.append("</body></html>\n")
    return write_text_atomic(report_dir / "index.html", "\n".join(parts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render the report index page.")
    parser.add_argument("command", choices=["index"])
    parser.add_argument("report_dir")
    args = parser.parse_args(argv)
    print(f"wrote {build_index(args.report_dir)}")


if __name__ == "__main__":
    main()
