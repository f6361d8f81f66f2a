"""The report's one-page answer, built from recorded metrics only.

`summary_markdown(recorded, profile)` turns the metrics every notebook recorded
(`reporting.load_metrics(<report>/metrics)`) into `summary.md`: search systems, `06`'s data-efficiency curve and
ablations, `04b`'s doc2query rows, the recommenders of `05`, the step to an online test, and
serving.
`headline_figures(recorded, folder)` draws the same figures as pictures for the index page. Nothing here
reads a notebook's variables, so the summary of a run and of the published reference are made the same way,
and a section whose notebook has not recorded its figures is left out rather than filled in.

Systems are named as the notebooks name them: `names` are those `reporting.metric_key` remembered
(`reporting.load_names`), and `display_name` otherwise undoes the key
("MiniLM_plus_MNRL_plus_synthetic_queries" → "MiniLM + MNRL + synthetic queries").
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ecomrec.metrics import error_bars, verdict

SEARCH_EXCLUDED = ("cross_encoder", "train_mean", "selected")  # 04's helper rows, not systems
DEPLOY_VERSIONS = ("PyTorch_fp32", "PyTorch_bf16", "PyTorch_int8", "ONNX_fp32", "ONNX_int8")


def display_name(segment: str, names: dict[str, str] | None = None) -> str:
    """A key segment in the words the notebooks use: the name `reporting.metric_key` remembered for it (`names`,
    from `reporting.load_names`), else the key undone as far as it can be ("+" and "→" come back, a comma or
    bracket it dropped does not)."""
    if names and segment in names:
        return names[segment]
    name = re.sub(r"(^|_)plus(_|$)", lambda m: (" " if m.group(1) else "") + "+" + (" " if m.group(2) else ""), segment)
    name = re.sub(r"_to_", " → ", name)
    return name.replace("_", " ").strip()


def _rows(metrics: dict, prefix: str, suffix: str, exclude: tuple[str, ...] = ()) -> dict[str, float]:
    """{segment: value} for every `<prefix>/<segment>/<suffix>` key, in recorded order."""
    found = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 4 and "/".join(parts[:2]) == prefix and parts[3] == suffix and not parts[2].startswith(exclude):
            found[parts[2]] = value
    return found


def _interval(metrics: dict, stem: str, low: str = "_ci_low", high: str = "_ci_high") -> tuple[float, float]:
    return metrics.get(f"{stem}{low}", math.nan), metrics.get(f"{stem}{high}", math.nan)


def _delta_line(name: str, diff: float, low: float, high: float, prefix: str = "") -> str:
    return f"- {name}: {prefix}{diff:+.3f} [{low:+.3f}, {high:+.3f}] — {verdict(low, high)}"


def search_table(recorded: dict, names: dict[str, str] | None = None) -> list[tuple[str, float, float, float]]:
    """(system, NDCG@10, CI low, CI high) of `04`'s test rows, lowest first."""
    r04 = recorded.get("04_finetuning", {})
    rows = _rows(r04, "search/test", "ndcg@10", SEARCH_EXCLUDED)
    return sorted(((display_name(k, names), v, *_interval(r04, f"search/test/{k}/ndcg@10")) for k, v in rows.items()),
                  key=lambda row: row[1])


def rec_table(recorded: dict, names: dict[str, str] | None = None) -> list[tuple[str, float, float, float]]:
    """(model, NDCG@10, CI low, CI high) of `05`'s leave-one-out test rows (fold-in view), lowest first."""
    r05 = recorded.get("05_hybrid_recommendation", {})
    rows = {k: v for k, v in _rows(r05, "rec/test", "ndcg@10").items() if f"rec/test/{k}/ndcg@10_ci_low" in r05}
    return sorted(((display_name(k, names), v, *_interval(r05, f"rec/test/{k}/ndcg@10")) for k, v in rows.items()),
                  key=lambda row: row[1])


def deploy_table(recorded: dict, names: dict[str, str] | None = None) -> list[tuple[str, float, float, float]]:
    """(query-encoder version, batch-1 p95 ms, test NDCG@10, Δ NDCG@10 against fp32) from `07`."""
    r07 = recorded.get("07_deployment", {})
    rows = []
    for version in DEPLOY_VERSIONS:
        key = f"deploy/test/query_encoder_{version}"
        if f"{key}/batch1_p95_ms" in r07:
            rows.append((display_name(version, names), r07[f"{key}/batch1_p95_ms"], r07[f"{key}/ndcg@10"],
                         r07.get(f"{key}/ndcg@10_delta_vs_fp32", math.nan)))
    return rows


CURVE_KEY = re.compile(r"^curve/test/(.+)_N_(\d+)/ndcg@10$")


def curve_points(recorded: dict, names: dict[str, str] | None = None) -> dict[str, dict[int, tuple]]:
    """`06`'s data-efficiency curve: {row: {N: (NDCG@10, Δ, Δ low, Δ high, upper bound)}}, "real only" first;
    Δ (against real only at the same N) is NaN where none was recorded."""
    r06 = recorded.get("06_evaluation", {})
    rows: dict[str, dict[int, tuple]] = {}
    for key, value in r06.items():
        if match := CURVE_KEY.match(key):
            segment, stem = f"{match.group(1)}_N_{match.group(2)}", key[: -len("/ndcg@10")]
            name = names[segment].rsplit(" N=", 1)[0] if names and segment in names else display_name(match.group(1))
            rows.setdefault(name, {})[int(match.group(2))] = (
                value, r06.get(f"{stem}/ndcg@10_delta", math.nan), *_interval(r06, f"{stem}/ndcg@10_delta"),
                bool(r06.get(f"{stem}/upper_bound", 0.0)))
    return dict(sorted(rows.items(), key=lambda row: row[0] != "real only"))


def _curve_section(recorded: dict, names: dict[str, str] | None = None) -> list[str]:
    rows = curve_points(recorded, names)
    if not rows:
        return []
    sizes = sorted({n for points in rows.values() for n in points})
    lines = ["## The data-efficiency curve (06)", "",
             "Test NDCG@10 against N real training queries (adapters on frozen MiniLM, every point trained to "
             "convergence on valid); each synthetic row adds the same number of its pairs to the same N real ones, "
             "Δ against real only at that N (paired 95% CI); * an upper bound (the writer saw more real queries than N).",
             "", "| N | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for n in sizes:
        cells = []
        for points in rows.values():
            if n not in points:
                cells.append("")
                continue
            value, diff, low, high, bound = points[n]
            cells.append(f"{value:.3f}" + (f" ({diff:+.3f}, {verdict(low, high)}){'*' if bound else ''}"
                                           if math.isfinite(diff) else ""))
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return lines + [""]


def _search_section(recorded: dict, names: dict[str, str] | None = None) -> list[str]:
    r04 = recorded.get("04_finetuning", {})
    rows = search_table(recorded, names)
    if not rows:
        return []
    head = (f"Search: {int(r04['search/test/protocol/queries']):,} test queries over "
            f"{int(r04['search/all/protocol/catalogue']):,} Home Depot products, NDCG@10 with graded gains (04)."
            if "search/test/protocol/queries" in r04 and "search/all/protocol/catalogue" in r04
            else "Search: NDCG@10 with graded gains (04).")
    lines = ["## Search", "", head, "", "| system | NDCG@10 | 95% CI |", "|---|---|---|"]
    lines += [f"| {name} | {value:.3f} | [{low:.3f}, {high:.3f}] |" for name, value, low, high in rows]
    return lines + [""]


def _ablation_section(recorded: dict, names: dict[str, str] | None = None) -> list[str]:
    r06 = recorded.get("06_evaluation", {})
    deltas = _rows(r06, "eval/test", "ndcg@10_delta")
    pools = _rows(r06, "eval/train", "pool_pairs")
    batch = r06.get("eval/train/augmentation/batch_size")
    if not deltas and not pools:
        return []
    lines = ["## Ablations (06)", "", "Each row against real pairs with in-batch negatives only, at equal "
             "wall-clock time (paired Δ NDCG@10, 95% CI):", ""]
    lines += [_delta_line(display_name(k, names), v, *_interval(r06, f"eval/test/{k}/ndcg@10_delta"))
              for k, v in deltas.items()]
    if batch is not None:
        lines += [f"- {display_name(k, names)}: left out — its pool had {int(size):,} pairs, under one batch"
                  for k, size in pools.items() if size < batch]
    return lines + [""]


def _llm_section(recorded: dict, names: dict[str, str] | None = None) -> list[str]:
    r04b = recorded.get("04b_llm_synthesis", {})
    lines = []
    for where, prefix in (("all test queries", "llm/test_bm25"), ("the cold test queries", "llm/test_cold_bm25")):
        deltas = _rows(r04b, prefix, "ndcg@10_delta_diff")
        if deltas:
            lines += ["", f"doc2query for BM25 (titles + kept synthetic queries against titles only, {where}):", ""]
            lines += [_delta_line(display_name(k, names), v, *_interval(r04b, f"{prefix}/{k}/ndcg@10_delta", "_low", "_high"),
                                  prefix="Δ ") for k, v in deltas.items()]
    if not lines:
        return []
    head = ["## Text from a pretrained LLM (SmolLM2-135M-Instruct, 04b)", ""]
    products, keep = r04b.get("llm/all/SmolLM2_LoRA/products"), r04b.get("llm/all/SmolLM2_LoRA/keep_rate")
    if products is not None and keep is not None:
        head.append(f"The LoRA writer covered {int(products):,} products, a uniform sample of the catalogue; the filter kept "
                    f"{keep:.0%} of its queries. What they add to a trained retriever is the data-efficiency curve's.")
    return head + lines + [""]


def _rec_section(recorded: dict, names: dict[str, str] | None = None) -> list[str]:
    r05 = recorded.get("05_hybrid_recommendation", {})
    rows = rec_table(recorded, names)
    if not rows:
        return []
    users = r05.get("rec/test/protocol/users")
    lines = ["## Recommendation (05)", "",
             f"Amazon Office, leave-one-out with the validation item folded into the test-time history, full ranking"
             f"{f', {int(users):,} users' if users is not None else ''}, NDCG@10:", "",
             "| model | NDCG@10 | 95% CI |", "|---|---|---|"]
    lines += [f"| {name} | {value:.4f} | [{low:.4f}, {high:.4f}] |" for name, value, low, high in rows]
    return lines + [""]


def _online_section(recorded: dict, names: dict[str, str] | None = None) -> list[str]:
    r06 = recorded.get("06_evaluation", {})
    lift, arm = r06.get("eval/test/online/offline_lift_ndcg@10"), r06.get("eval/test/online/ab_users_per_arm")
    if lift is None or arm is None:
        return []
    needed = r06.get("eval/test/online/interleaving_impressions_for_power")
    largest = r06.get("eval/test/online/interleaving_largest_simulation")
    impressions = (f"{int(needed):,} impressions" if needed is not None else
                   f"more than {int(largest):,} impressions" if largest is not None else "more impressions than simulated")
    return ["## Online (06)", "",
            f"The offline difference, fine-tuned bi-encoder − BM25, of {lift:+.3f} NDCG@10 would need about "
            f"{int(arm):,} users per arm in an A/B test; simulated interleaving reaches 80% power with {impressions}.", ""]


def _deploy_section(recorded: dict, names: dict[str, str] | None = None) -> list[str]:
    rows = deploy_table(recorded, names)
    if not rows:
        return []
    lines = ["## Serving (07)", "", "| query encoder | batch-1 p95 ms | test NDCG@10 | Δ vs PyTorch fp32 |", "|---|---|---|---|"]
    lines += [f"| {name} | {p95:.1f} | {ndcg:.3f} | {delta:+.3f} |" for name, p95, ndcg, delta in rows]
    return lines + [""]


def summary_markdown(recorded: dict[str, dict[str, float]], profile: str, names: dict[str, str] | None = None) -> str:
    """`summary.md` for one run: every figure is a recorded value, every verdict `metrics.verdict`'s."""
    lines = [f"# ecomrec — summary ({profile} profile)", ""]
    for section in (_search_section, _curve_section, _ablation_section, _llm_section, _rec_section, _online_section, _deploy_section):
        lines += section(recorded, names)
    return "\n".join(lines).rstrip() + "\n"


def headline_sections(recorded: dict[str, dict[str, float]], names: dict[str, str] | None = None) -> list[str]:
    """The summary's headline tables as markdown lines: search, data-efficiency curve, recommendation, serving (the
    README's reference section quotes these; `summary_markdown` adds the ablation, LLM and online tables)."""
    lines: list[str] = []
    for section in (_search_section, _curve_section, _rec_section, _deploy_section):
        lines += section(recorded, names)
    return lines


def headline_figures(recorded: dict[str, dict[str, float]], folder: str | Path,
                     names: dict[str, str] | None = None) -> list[Path]:
    """Draw the report's headline figures (search, data-efficiency curve, recommendation, serving) as SVG files in `folder`, one per
    notebook that recorded them; return their paths."""
    from matplotlib.figure import Figure  # no pyplot: no backend switched, no figure left open in the caller

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def bars(rows, title, xlabel, name, digits):
        fig = Figure(figsize=(7, 0.32 * len(rows) + 1.2))
        ax = fig.subplots()
        labels, values = [r[0] for r in rows], [r[1] for r in rows]
        errors = error_bars(values, [r[2] for r in rows], [r[3] for r in rows])
        ax.barh(labels, values, xerr=errors, color="tab:blue", capsize=2)
        largest = max(max(values), max(r[3] for r in rows if math.isfinite(r[3])) if rows else 0)
        for y, (v, row) in enumerate(zip(values, rows)):
            inside = v > 0.2 * largest  # a short bar gets its label beyond its interval, in black
            x = 0 if inside else (row[3] if math.isfinite(row[3]) else v)
            ax.annotate(f"{v:.{digits}f}", (x, y), xytext=(3, 0), textcoords="offset points", va="center",
                        color="white" if inside else "black", fontsize=8)
        ax.set(title=title, xlabel=xlabel)
        fig.tight_layout()
        fig.savefig(folder / name)
        written.append(folder / name)

    if rows := search_table(recorded, names):
        bars(rows, "Search (04): test NDCG@10, 95 % CI", "NDCG@10, graded", "search.svg", 3)
    if rows := rec_table(recorded, names):
        bars(rows, "Recommendation (05): test NDCG@10, 95 % CI", "NDCG@10, leave-one-out, full ranking", "recommendation.svg", 4)
    if curve := curve_points(recorded, names):
        fig = Figure(figsize=(7, 3.6))
        ax = fig.subplots()
        sizes = sorted({n for points in curve.values() for n in points})
        for name, points in curve.items():
            ns = sorted(points)
            ax.plot([sizes.index(n) for n in ns], [points[n][0] for n in ns], marker="o", label=name)
        ax.set_xticks(range(len(sizes)), [f"{n:,}" for n in sizes])
        ax.set(title="Data efficiency (06): test NDCG@10 against real training queries", xlabel="real training queries N",
               ylabel="test NDCG@10")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "curve.svg")
        written.append(folder / "curve.svg")
    if rows := deploy_table(recorded, names):
        fig = Figure(figsize=(6, 3.4))
        ax = fig.subplots()
        for name, p95, ndcg, _ in rows:
            ax.scatter(p95, ndcg)
            ax.annotate(name, (p95, ndcg), xytext=(4, 4), textcoords="offset points", fontsize=8)
        latencies = [row[1] for row in rows]
        ax.set(title="Serving (07): query encoder, batch 1", xlabel="p95 latency, ms", ylabel="test NDCG@10",
               xscale="log" if max(latencies) > 10 * min(latencies) else "linear")
        ax.margins(x=0.3, y=0.15)  # room for the labels
        fig.tight_layout()
        fig.savefig(folder / "serving.svg")
        written.append(folder / "serving.svg")
    return written
