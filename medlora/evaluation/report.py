"""Comparison reports: a Rich table on the terminal, ``report.md`` and ``report.json`` on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

_LATENCY_ROWS = [
    ("latency_mean_s", "Latency mean (s/answer)", "{:.2f}"),
    ("latency_p50_s", "Latency p50 (s/answer)", "{:.2f}"),
    ("latency_p95_s", "Latency p95 (s/answer)", "{:.2f}"),
    ("tokens_per_s", "Generated tokens/s", "{:.1f}"),
]


def _rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    variants = report["variants"]
    names = list(variants)
    rows = []
    for metric, label in report["metric_labels"].items():
        values = [variants[v].get(metric) for v in names]
        cells = [f"{x:.4f}" if x is not None else "–" for x in values]
        if "base" in variants and len(names) > 1 and values[0] is not None and values[-1] is not None:
            cells.append(f"{values[-1] - values[0]:+.4f}")
        else:
            cells.append("")
        rows.append([label, *cells])
    for key, label, fmt in _LATENCY_ROWS:
        if any(key in variants[v] for v in names):
            rows.append([label, *[fmt.format(variants[v][key]) if key in variants[v] else "–" for v in names], ""])
    return ["Metric", *names, "Δ (last − base)"], rows


def render_markdown(report: dict[str, Any], include_examples: bool = True) -> str:
    header, rows = _rows(report)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    out = "\n".join(lines)
    if not include_examples:
        return out
    meta = report.get("meta", {})
    head = (f"# Evaluation: {meta.get('adapter')} on {meta.get('base_model')}\n\n"
            f"{report['samples']} held-out questions ({meta.get('specialty')}, data hash "
            f"{meta.get('dataset_hash')}), {meta.get('decoding')} decoding, max {meta.get('max_new_tokens')} "
            f"new tokens, {meta.get('date')}.\n\n")
    gate = report.get("gate")
    if gate:
        out += "\n\nQuality gate: " + ("passed" if gate["passed"] else "FAILED — " + "; ".join(gate["failures"]))
    examples = report.get("examples", [])
    if examples:
        out += "\n\n## Examples\n"
        for ex in examples:
            out += (f"\n**Q:** {ex['question']}\n\n- reference: {ex['reference'][:400]}\n"
                    f"- base: {ex['base'][:400]}\n- adapter: {ex['adapter'][:400]}\n")
    return head + out + "\n"


def print_table(report: dict[str, Any], console: Console | None = None) -> None:
    header, rows = _rows(report)
    table = Table(title=f"Base vs adapter — {report['samples']} held-out questions")
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    (console or Console()).print(table)


def write_reports(report: dict[str, Any], output_dir: Path) -> tuple[Path, Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / "report.json", output_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return json_path, md_path
