"""Comparison reports: a Rich table on the terminal, ``report.md``, ``report.json`` and ``report.html``.

Everything renders from the report's JSON form, so a saved ``report.json`` can be re-rendered later. Scores
are kept on 0–1 internally and shown like the original note: BLEU/ROUGE-L as 0.42, the others as 45 %.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

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


def _rows(report: dict[str, Any], with_expected: bool = True) -> tuple[list[str], list[list[str]]]:
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


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _mb(value: float | None) -> str:
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
        parts.append(_md_table(header, rows))
    memory = resources.get("memory", {})
    if memory:
        mem_rows = [
            ["LoRA parameters the adapter adds", _mb(memory.get("adapter_parameter_bytes"))],
            ["Process RSS added by attaching the adapter", _mb(memory.get("rss_added_by_adapter_bytes"))],
            ["Peak process RSS (base + adapter)", _mb(memory.get("peak_rss_bytes"))],
        ]
        if memory.get("peak_rss_with_merged_copy_bytes") is not None:
            mem_rows.append(["Peak process RSS (with the merged copy)",
                             _mb(memory.get("peak_rss_with_merged_copy_bytes"))])
        gpu = resources.get("summary", {}).get("gpu_added_by_adapter_mb")
        mem_rows.append(["GPU memory added by the adapter (peak)", "– (no CUDA)" if gpu is None else f"{gpu:.1f} MB"])
        parts.append(_md_table(["Memory", "value"], mem_rows))
    for note in resources.get("notes", []):
        parts.append(f"Note: {note}")
    return "\n\n".join(parts)


def render_data_markdown(data: dict[str, Any]) -> str:
    """The evaluation data manifest: what was evaluated on, from where, under which license."""
    if not data:
        return ""
    rows = [[k, v] for k, v in data.items() if k not in ("sources", "vocabulary") and v not in (None, "", [], {})]
    parts = ["### Evaluation data", _md_table(["item", "value"], rows)]
    sources = data.get("sources") or []
    if sources:
        parts.append("Sources and licenses of the test split:\n\n" + "\n".join(
            f"- `{s.get('spec')}`: {s.get('records', 0)} records, license {s.get('license')}"
            + (f". {s['attribution']}" if s.get("attribution") else "") for s in sources))
    vocabulary = data.get("vocabulary") or {}
    if vocabulary:
        parts.append("Terminology vocabulary: " + ", ".join(f"{k} {v}" for k, v in vocabulary.items()))
    return "\n\n".join(parts)


def render_markdown(report: dict[str, Any], include_examples: bool = True) -> str:
    header, rows = _rows(report)
    out = _md_table(header, rows)
    if report.get("expected_label"):
        out += f"\n\nThe last column gives {report['expected_label']}, for comparison only."
    if not include_examples:
        return out
    meta = report.get("meta", {})
    counts = report.get("counts", {})
    head = (f"# Evaluation: {meta.get('adapter')} on {meta.get('base_model')}\n\n"
            f"{report['samples']} held-out questions ({meta.get('specialty')}, data hash "
            f"{meta.get('dataset_hash')}), {counts.get('vignettes', 0)} diagnostic vignettes, each question "
            f"answered {', '.join((meta.get('modes') or {'closed': 'closed-book'}).values())}; "
            f"{meta.get('decoding')} decoding, max "
            f"{meta.get('max_new_tokens')} new tokens, seed {meta.get('seed')}, {meta.get('date')}.\n\n")
    out += render_checks_markdown(report)
    gate = report.get("gate")
    if gate:
        out += "\n\nQuality gate: " + ("passed" if gate["passed"] else "FAILED — " + "; ".join(gate["failures"]))
    resources = render_resources_markdown(report.get("resources", {}))
    if resources:
        out += "\n\n" + resources
    data = render_data_markdown(report.get("evaluation_data", {}))
    if data:
        out += "\n\n" + data
    for note in report.get("notes", []):
        out += f"\n\nNote: {note}"
    examples = report.get("examples", [])
    if examples:
        out += "\n\n## Examples\n"
        for ex in examples:
            out += (f"\n**Q:** {ex['question']}\n\n- reference: {ex['reference'][:400]}\n"
                    f"- base: {ex['base'][:400]}\n- adapter: {ex['adapter'][:400]}\n")
    for ex in report.get("vignette_examples", []):
        out += (f"\n**Vignette:** {ex['vignette'][:500]}\n\n- gold: {ex['gold']}; options: {', '.join(ex['options'])}\n"
                f"- base chose: {ex.get('base_choice')}; answered: {ex['base'][:200]}\n"
                f"- adapter chose: {ex.get('adapter_choice')}; answered: {ex['adapter'][:200]}\n")
    for case in report.get("note_cases", []):
        out += (f"\n**The note's question:** {case['question']}\n\n"
                f"- base, closed-book: {case['base_closed'][:400]}\n"
                f"- adapter, closed-book: {case['adapter_closed'][:400]}\n"
                "- sources shown: " + "; ".join(f"[{i}] {t}" for i, t in enumerate(case["sources"], start=1))
                + f"\n- base, with sources: {case['base_sources'][:400]}\n"
                f"- adapter, with sources: {case['adapter_sources'][:400]}\n")
    for ex in report.get("cited_examples", []):
        out += (f"\n**Q ({ex.get('mode', 'with sources')}):** {ex['question']}\n\n- sources: "
                + "; ".join(f"[{i}] {t}" for i, t in enumerate(ex["sources"], start=1))
                + f"\n- base: {ex['base'][:400]}\n- adapter: {ex['adapter'][:400]}\n")
    return head + out + "\n"


def render_checks_markdown(report: dict[str, Any]) -> str:
    """Outside the specialty (base vs adapter, with intervals) and the adapter's open- vs closed-book gain."""
    out = ""
    outside = report.get("outside") or {}
    if outside:
        rows = [[row["label"], format_value(row["base"], _display_of(key)),
                 format_value(row["adapter"], _display_of(key)),
                 format_interval(row["interval"], _display_of(key)) if row.get("interval") else "", str(row["n"])]
                for key, row in outside.items()]
        out += ("\n\n### Outside the specialty\n\n"
                + _md_table(["Check", "base", "adapter", "Δ [95 % CI]", "n"], rows))
    checks = report.get("checks") or {}
    for key, value in checks.items():
        if key.startswith("adapter_rouge_l_") and isinstance(value, dict):
            mode = key.removeprefix("adapter_rouge_l_").removesuffix("_minus_closed")
            out += (f"\n\nAdapter ROUGE-L, {mode} minus closed-book (paired): {format_interval(value)}")
    loops = checks.get("loop_stopped")
    if loops:
        out += "\n\nLoop stop triggered (answers cut at a repeat): " + "; ".join(
            f"{name} " + ", ".join(f"{mode} {count}" for mode, count in modes.items()) for name, modes in loops.items())
    return out


def _display_of(key: str) -> str:
    return "percent" if "accuracy" in key else "score"


def _rich_table(title: str, caption: str | None, header: list[str], rows: list[list[str]]) -> Table:
    """A Rich table with the first column left-aligned (labels) and the others right-aligned (numbers)."""
    table = Table(title=title, caption=caption)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_table(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    header, rows = _rows(report)
    console.print(_rich_table(f"Base vs adapter — {report['samples']} held-out questions",
                              f"Last column: {EXPECTED_LABEL}" if report.get("expected_label") else None,
                              header, rows))
    resources = report.get("resources", {})
    header, rows = resource_rows(resources)
    if rows:
        console.print(_rich_table("Latency (batch 1, fixed length) and memory",
                                  f"{EXPECTED_LABEL}: {NOTE_RESOURCES['latency']}, {NOTE_RESOURCES['memory']}",
                                  header, rows))
        memory = resources.get("memory", {})
        if "adapter_parameter_bytes" in memory:
            console.print(f"LoRA parameters: {_mb(memory['adapter_parameter_bytes'])}; peak RSS "
                          f"{_mb(memory.get('peak_rss_bytes'))}")
    outside = report.get("outside") or {}
    if outside:
        console.print(_rich_table("Outside the specialty (a good adapter stays within noise)", None,
                                  ["Check", "base", "adapter", "Δ [95 % CI]", "n"],
                                  [[row["label"], format_value(row["base"], _display_of(key)),
                                    format_value(row["adapter"], _display_of(key)),
                                    format_interval(row["interval"], _display_of(key)) if row.get("interval") else "",
                                    str(row["n"])] for key, row in outside.items()]))
    for key, value in (report.get("checks") or {}).items():
        if key.startswith("adapter_rouge_l_") and isinstance(value, dict):
            mode = key.removeprefix("adapter_rouge_l_").removesuffix("_minus_closed")
            console.print(f"Adapter ROUGE-L, {mode} minus closed-book (paired): {format_interval(value)}")
    gate = report.get("gate")
    if gate:
        console.print("Quality gate: " + ("[bold green]passed[/]" if gate["passed"] else
                                          "[bold red]FAILED[/] — " + "; ".join(gate["failures"])))


def write_reports(report: dict[str, Any], output_dir: Path, loss_curve: Path | None = None) -> tuple[Path, Path]:
    """``report.json``, ``report.md`` and the self-contained ``report.html``."""
    from medlora.evaluation.report_html import render_html

    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / "report.json", output_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    (output_dir / "report.html").write_text(render_html(report, loss_curve=loss_curve), encoding="utf-8")
    return json_path, md_path


# --- the adapter x specialty matrix -------------------------------------------------------------------


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


def render_matrix_markdown(matrix: dict[str, Any]) -> str:
    parts = [f"# Specialisation matrix on {matrix.get('meta', {}).get('base_model')}",
             "Rows: the base model and each adapter; columns: the test split of each specialty. `*` marks the "
             "best row of a column. An adapter should win its own specialty's column."]
    for _, label, header, rows in matrix_tables(matrix):
        parts += [f"## {label}", _md_table(header, rows)]
    counts = matrix.get("counts", {})
    if counts:
        parts.append("Samples per specialty: " + "; ".join(
            f"{s}: {c.get('qa', 0)} questions, {c.get('vignettes', 0)} vignettes, {c.get('cited', 0)} cited answers"
            for s, c in counts.items()))
    gate = matrix.get("gate")
    if gate:
        parts.append("Quality gate (each adapter vs base on its own specialty): "
                     + ("passed" if gate["passed"] else "FAILED — " + "; ".join(gate["failures"])))
    for note in matrix.get("notes", []):
        parts.append(f"Note: {note}")
    return "\n\n".join(parts) + "\n"


def print_matrix(matrix: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    for _, label, header, rows in matrix_tables(matrix):
        console.print(_rich_table(label, None, header, rows))


def write_matrix_reports(matrix: dict[str, Any], output_dir: Path) -> Path:
    from medlora.evaluation.report_html import render_matrix_html

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "matrix.json").write_text(json.dumps(matrix, indent=2, ensure_ascii=False), encoding="utf-8")
    (output_dir / "matrix.md").write_text(render_matrix_markdown(matrix), encoding="utf-8")
    (output_dir / "matrix.html").write_text(render_matrix_html(matrix), encoding="utf-8")
    return output_dir / "matrix.md"
