"""The report's numbers as cells and rows: formatting, the metric and resource tables, the matrix tables.

The markdown and terminal reports (:mod:`medlora.evaluation.report`) and the HTML report
(:mod:`medlora.evaluation.report_html`) all render from these, so the three show the same figures.
"""

from __future__ import annotations

from typing import Any

# The original design note's expectations (for Flan-T5-XL; not a target for a 135M model on a CPU).
EXPECTED_LABEL = "the note's expectations for Flan-T5-XL"
NOTE_EXPECTATIONS: dict[str, dict[str, float]] = {
    "bleu": {"base": 0.42, "adapter": 0.68},
    "rouge_l": {"base": 0.51, "adapter": 0.74},
    "terminology_recall": {"base": 0.45, "adapter": 0.87},
    # The note gives one "diagnostic precision" figure; it is shown beside both diagnostic scores.
    "diagnostic_accuracy_mc": {"base": 0.62, "adapter": 0.81},
    "diagnostic_accuracy_free": {"base": 0.62, "adapter": 0.81},
    "citation_relevance": {"base": 0.38, "adapter": 0.79},
}
NOTE_RESOURCES = {"latency": "+10–20 % per answer", "memory": "+200–500 MB VRAM"}

_LATENCY_ROWS = [
    ("latency_mean_s", "Latency mean (s/answer, batched)", "{:.2f}"),
    ("latency_p50_s", "Latency p50 (s/answer, batched)", "{:.2f}"),
    ("latency_p95_s", "Latency p95 (s/answer, batched)", "{:.2f}"),
    ("tokens_per_s", "Generated tokens/s (batched)", "{:.1f}"),
]


def format_value(value: float | None, display: str = "score") -> str:
    if value is None:
        return "–"
    if display == "percent":
        return f"{100 * value:.1f} %"
    if display == "count":
        return f"{value:.0f}"
    return f"{value:.3f}"


def format_delta(delta: float, display: str = "score") -> str:
    # Rounded to the shown precision first, so that float noise never shows as "-0.000".
    if display == "percent":
        return f"{round(100 * delta, 1) + 0.0:+.1f} pp"
    if display == "count":
        return f"{round(delta) + 0:+d}"
    return f"{round(delta, 3) + 0.0:+.3f}"


def _expected_cell(metric: str, display: str) -> str:
    expected = NOTE_EXPECTATIONS.get(metric)
    if not expected:
        return ""
    if display == "percent":  # as the note writes them: 45 % → 87 %, 0.42 → 0.68
        return f"{100 * expected['base']:.0f} % → {100 * expected['adapter']:.0f} %"
    return f"{expected['base']:.2f} → {expected['adapter']:.2f}"


def format_interval(interval: dict[str, float], display: str = "score") -> str:
    """``+0.012 [+0.003, +0.021]``: the delta and its paired-bootstrap 95 % interval."""
    return (f"{format_delta(interval['delta'], display)} "
            f"[{format_delta(interval['low'], display)}, {format_delta(interval['high'], display)}]")


def metric_rows(report: dict[str, Any], with_expected: bool = True) -> tuple[list[str], list[list[str]]]:
    variants = report["variants"]
    names = list(variants)
    displays = report.get("metric_display", {})
    intervals = report.get("intervals", {})
    rows = []
    for metric, label in report["metric_labels"].items():
        display = displays.get(metric, "score")
        values = [variants[v].get(metric) for v in names]
        cells = [format_value(x, display) for x in values]
        if metric in intervals:
            cells.append(format_interval(intervals[metric], display))
        elif "base" in variants and len(names) > 1 and values[0] is not None and values[-1] is not None:
            cells.append(format_delta(values[-1] - values[0], display))
        else:
            cells.append("")
        if with_expected:
            name, _, mode = metric.partition("@")
            cells.append(_expected_cell(name, display) if mode in ("", "closed") else "")
        rows.append([label, *cells])
    for key, label, fmt in _LATENCY_ROWS:
        if any(key in variants[v] for v in names):
            row = [label, *[fmt.format(variants[v][key]) if key in variants[v] else "–" for v in names], ""]
            rows.append(row + ([""] if with_expected else []))
    header = ["Metric", *names, "Δ (last − base) [95 % CI]" if intervals else "Δ (last − base)"]
    if with_expected:
        header.append("Note: base → adapter")
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def format_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) < 2**20:
        return f"{value / 2**10:.1f} KB"
    return f"{value / 2**20:.1f} MB"


def resource_rows(resources: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Latency per variant (batch 1, fixed length) and memory, with the note's expectations."""
    header = ["Variant", "Latency mean (s)", "p50 (s)", "p95 (s)", "tokens/s", "vs base"]
    summary = resources.get("summary", {})
    rows = []
    for name in ("base", "adapter", "merged"):
        stats = resources.get(name)
        if not stats:
            continue
        pct = summary.get(f"{name}_latency_overhead_pct")
        rows.append([
            {"base": "base", "adapter": "adapter (unmerged LoRA)", "merged": "adapter merged"}[name],
            f"{stats['latency_mean_s']:.3f}", f"{stats['latency_p50_s']:.3f}", f"{stats['latency_p95_s']:.3f}",
            f"{stats['tokens_per_s']:.1f}", "" if pct is None else f"{pct:+.1f} %",
        ])
    return header, rows


def render_resources_markdown(resources: dict[str, Any]) -> str:
    if not resources:
        return ""
    settings = resources.get("settings", {})
    parts = ["### Latency and memory"]
    header, rows = resource_rows(resources)
    if rows:
        parts.append(f"{settings.get('answers', '?')} answers per variant, batch size 1, exactly "
                     f"{settings.get('max_new_tokens', '?')} new tokens each, timed interleaved, on "
                     f"{settings.get('device', '?')}; {EXPECTED_LABEL}: latency {NOTE_RESOURCES['latency']}, "
                     f"{NOTE_RESOURCES['memory']}.")
        parts.append(markdown_table(header, rows))
    memory = resources.get("memory", {})
    if memory:
        mem_rows = [
            ["LoRA parameters the adapter adds", format_bytes(memory.get("adapter_parameter_bytes"))],
            ["Process RSS added by attaching the adapter", format_bytes(memory.get("rss_added_by_adapter_bytes"))],
            ["Peak process RSS (base + adapter)", format_bytes(memory.get("peak_rss_bytes"))],
        ]
        if memory.get("peak_rss_with_merged_copy_bytes") is not None:
            mem_rows.append(["Peak process RSS (with the merged copy)",
                             format_bytes(memory.get("peak_rss_with_merged_copy_bytes"))])
        gpu = resources.get("summary", {}).get("gpu_added_by_adapter_mb")
        mem_rows.append(["GPU memory added by the adapter (peak)", "– (no CUDA)" if gpu is None else f"{gpu:.1f} MB"])
        parts.append(markdown_table(["Memory", "value"], mem_rows))
    stages = resources.get("stage_seconds", {})
    if stages:
        parts.append("Evaluation time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages.items())
                     + f" (total {sum(stages.values()):.0f} s).")
    for note in resources.get("notes", []):
        parts.append(f"Note: {note}")
    return "\n\n".join(parts)


def render_data_markdown(data: dict[str, Any]) -> str:
    """The evaluation data manifest: what was evaluated on, from where, under which license."""
    if not data:
        return ""
    rows = [[k, v] for k, v in data.items() if k not in ("sources", "vocabulary") and v not in (None, "", [], {})]
    parts = ["### Evaluation data", markdown_table(["item", "value"], rows)]
    sources = data.get("sources") or []
    if sources:
        parts.append("Sources and licenses of the test split:\n\n" + "\n".join(
            f"- `{s.get('spec')}`: {s.get('records', 0)} records, license {s.get('license')}"
            + (f". {s['attribution']}" if s.get("attribution") else "") for s in sources))
    vocabulary = data.get("vocabulary") or {}
    if vocabulary:
        parts.append("Terminology vocabulary: " + ", ".join(f"{k} {v}" for k, v in vocabulary.items()))
    return "\n\n".join(parts)


def matrix_tables(matrix: dict[str, Any]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """One ``(metric, label, header, rows)`` table per metric: rows = adapters (base first), columns =
    specialties; ``*`` marks the best row(s) of each column (nothing when all rows tie)."""
    specialties = matrix["specialties"]
    cells = matrix["cells"]
    displays = matrix.get("metric_display", {})
    lower_better = set(matrix.get("lower_is_better", []))
    tables = []
    for metric, label in matrix["metric_labels"].items():
        display = displays.get(metric, "score")
        best: dict[str, set[str]] = {}
        for s in specialties:
            values = {row: cells[row].get(s, {}).get(metric) for row in cells}
            values = {row: round(v, 9) for row, v in values.items() if v is not None}
            if len(set(values.values())) > 1:  # a tie of every row marks nothing
                top = (min if metric in lower_better else max)(values.values())
                best[s] = {row for row, v in values.items() if v == top}
        rows = []
        for row in cells:
            line = [row]
            for s in specialties:
                value = cells[row].get(s, {}).get(metric)
                line.append(format_value(value, display) + (" *" if row in best.get(s, set()) else ""))
            rows.append(line)
        tables.append((metric, label, ["adapter \\ specialty", *specialties], rows))
    return tables
