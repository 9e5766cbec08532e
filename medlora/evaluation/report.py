"""Comparison reports: a Rich table on the terminal, ``report.md``, ``report.json`` and ``report.html``.

Everything renders from the report's JSON form, so a saved ``report.json`` can be re-rendered later. Scores
are kept on 0–1 internally and shown like the original note: BLEU/ROUGE-L as 0.42, the others as 45 %.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from medlora.evaluation.forgetting import adapter_reverses, base_reads
from medlora.evaluation.gate import waived_text
from medlora.evaluation.report_html import render_html, render_matrix_html
from medlora.evaluation.report_tables import (
    EXPECTED_LABEL,
    NOTE_RESOURCES,
    format_bytes,
    format_interval,
    format_value,
    markdown_table,
    matrix_tables,
    metric_rows,
    render_data_markdown,
    render_resources_markdown,
    resource_rows,
)


def render_markdown(report: dict[str, Any], include_examples: bool = True) -> str:
    header, rows = metric_rows(report)
    out = markdown_table(header, rows)
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
        out += ("\n\nQuality gate: " + ("passed" if gate["passed"] else "FAILED — " + "; ".join(gate["failures"]))
                + waived_text(gate))
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


def reading_check_note(outside: dict[str, Any]) -> str | None:
    """One line on the reading check's answers: each model's share of "Yes", the judgements changed, and
    whether either model reads the checks at all (AUC), which says what the accuracy interval can mean."""
    row = outside.get("reading_check_accuracy")
    if not row or "yes_rate" not in row:
        return None
    note = (f"Reading check: the base answers \"Yes\" to {100 * row['yes_rate']['base']:.0f} % of the checks "
            f"(half are yes), the adapter to {100 * row['yes_rate']['adapter']:.0f} %; the adapter changes "
            f"{100 * row['changed']:.0f} % of the base's answers.")
    aucs = row.get("auc")
    if aucs:
        base, adapter = aucs["base"], aucs["adapter"]
        note += (f" AUC of the \"Yes\" minus \"No\" log-likelihood (0.5 = no reading): base {base['mean']:.2f} "
                 f"[{base['low']:.2f}, {base['high']:.2f}], adapter {adapter['mean']:.2f} "
                 f"[{adapter['low']:.2f}, {adapter['high']:.2f}].")
        if not base_reads(row):
            note += (" The base does not read these checks above chance, so this check can show answers changed, "
                     "not reading lost.")
        delta = row.get("auc_delta")
        if delta:
            note += (f" Adapter minus base AUC {delta['mean']:+.2f} [{delta['low']:+.2f}, {delta['high']:+.2f}]"
                     + ("; the adapter's margins follow the abstracts measurably less than the base's, whatever "
                        "the accuracy says." if delta["high"] < 0 else "."))
        if adapter_reverses(row):
            note += (" The adapter's AUC lies below 0.5: its answers go against the abstracts, a change this check "
                     "does measure.")
    return note


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
                + markdown_table(["Check", "base", "adapter", "Δ [95 % CI]", "n"], rows))
        note = reading_check_note(outside)
        if note:
            out += f"\n\n{note}"
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
    header, rows = metric_rows(report)
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
            console.print(f"LoRA parameters: {format_bytes(memory['adapter_parameter_bytes'])}; peak RSS "
                          f"{format_bytes(memory.get('peak_rss_bytes'))}")
    outside = report.get("outside") or {}
    if outside:
        console.print(_rich_table("Outside the specialty (a good adapter stays within noise)", None,
                                  ["Check", "base", "adapter", "Δ [95 % CI]", "n"],
                                  [[row["label"], format_value(row["base"], _display_of(key)),
                                    format_value(row["adapter"], _display_of(key)),
                                    format_interval(row["interval"], _display_of(key)) if row.get("interval") else "",
                                    str(row["n"])] for key, row in outside.items()]))
        note = reading_check_note(outside)
        if note:
            console.print(note)
    for key, value in (report.get("checks") or {}).items():
        if key.startswith("adapter_rouge_l_") and isinstance(value, dict):
            mode = key.removeprefix("adapter_rouge_l_").removesuffix("_minus_closed")
            console.print(f"Adapter ROUGE-L, {mode} minus closed-book (paired): {format_interval(value)}")
    gate = report.get("gate")
    if gate:
        console.print("Quality gate: " + ("[bold green]passed[/]" if gate["passed"] else
                                          "[bold red]FAILED[/] — " + "; ".join(gate["failures"]))
                      + escape(waived_text(gate)))


def write_reports(report: dict[str, Any], output_dir: Path, loss_curve: Path | None = None) -> tuple[Path, Path]:
    """``report.json``, ``report.md`` and the self-contained ``report.html``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / "report.json", output_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    html = render_html(report, loss_curve=loss_curve, checks_markdown=render_checks_markdown(report))
    (output_dir / "report.html").write_text(html, encoding="utf-8")
    return json_path, md_path


# --- the adapter x specialty matrix -------------------------------------------------------------------


def render_matrix_markdown(matrix: dict[str, Any]) -> str:
    parts = [f"# Specialisation matrix on {matrix.get('meta', {}).get('base_model')}",
             "Rows: the base model and each adapter; columns: the test split of each specialty. `*` marks the "
             "best row of a column. An adapter should win its own specialty's column."]
    for _, label, header, rows in matrix_tables(matrix):
        parts += [f"## {label}", markdown_table(header, rows)]
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
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "matrix.json").write_text(json.dumps(matrix, indent=2, ensure_ascii=False), encoding="utf-8")
    (output_dir / "matrix.md").write_text(render_matrix_markdown(matrix), encoding="utf-8")
    (output_dir / "matrix.html").write_text(render_matrix_html(matrix), encoding="utf-8")
    return output_dir / "matrix.md"
