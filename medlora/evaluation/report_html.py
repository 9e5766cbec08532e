"""A self-contained ``report.html``: tables, a base-vs-adapter bar chart and the adapter's loss curve, with
the images embedded as base64 PNG (one file to mail or attach, nothing to fetch)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from medlora.evaluation.gate import waived_text
from medlora.evaluation.report_tables import (
    EXPECTED_LABEL,
    NOTE_EXPECTATIONS,
    format_bytes,
    metric_rows,
    matrix_tables,
    render_data_markdown,
    resource_rows,
)

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #1b1f23; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #d0d7de; padding: 0.35em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f6f8fa; }
.note { color: #57606a; font-size: 0.92em; }
.fail { color: #b42318; font-weight: 600; } .pass { color: #1a7f37; font-weight: 600; }
img { max-width: 100%; }
details { margin: 0.6em 0; } pre { white-space: pre-wrap; background: #f6f8fa; padding: 0.6em; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def metrics_chart_png(report: dict[str, Any]) -> bytes | None:
    """Grouped bars per metric (0–1 scale): base vs adapter, with the note's expectations as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = report["variants"]
    displays = report.get("metric_display", {})
    metrics = [m for m in report["metric_labels"] if displays.get(m, "score") != "count"
               and any(variants[v].get(m) is not None for v in variants)]
    if not metrics:
        return None
    names = list(variants)
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(metrics) + 2), 4.0))
    colours = ["#8c959f", "#0969da", "#1a7f37", "#bf8700"]
    for i, name in enumerate(names):
        xs = [m_i + (i - (len(names) - 1) / 2) * width for m_i in range(len(metrics))]
        ys = [variants[name].get(m) or 0.0 for m in metrics]
        ax.bar(xs, ys, width=width, label=name, color=colours[i % len(colours)])
        for x, m in zip(xs, metrics, strict=True):
            expected = NOTE_EXPECTATIONS.get(m, {}).get(name)
            if expected is not None:
                ax.plot([x - width / 2, x + width / 2], [expected, expected], color="#cf222e", linewidth=2)
    ax.plot([], [], color="#cf222e", linewidth=2, label=EXPECTED_LABEL)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([report["metric_labels"][m] for m in metrics], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (0–1; percentages / 100)")
    ax.set_title("Base vs adapter")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _figure_png(fig)


def _examples_html(report: dict[str, Any]) -> str:
    parts = []
    for ex in report.get("examples", []):
        parts.append(f"<details><summary>{_esc(ex['question'])}</summary><p><b>Reference:</b> "
                     f"{_esc(ex['reference'])}</p><p><b>Base:</b> {_esc(ex['base'])}</p><p><b>Adapter:</b> "
                     f"{_esc(ex['adapter'])}</p></details>")
    for ex in report.get("vignette_examples", []):
        parts.append(f"<details><summary>Vignette: {_esc(ex['gold'])}</summary><pre>{_esc(ex['vignette'])}</pre>"
                     f"<p>Options: {_esc(', '.join(ex['options']))}</p><p><b>Base</b> chose "
                     f"{_esc(ex.get('base_choice'))}, answered: {_esc(ex['base'])}</p><p><b>Adapter</b> chose "
                     f"{_esc(ex.get('adapter_choice'))}, answered: {_esc(ex['adapter'])}</p></details>")
    for ex in report.get("cited_examples", []):
        sources = "".join(f"<li>[{i}] {_esc(t)}</li>" for i, t in enumerate(ex["sources"], start=1))
        parts.append(f"<details><summary>With sources: {_esc(ex['question'])}</summary><ol>{sources}</ol>"
                     f"<p><b>Base:</b> {_esc(ex['base'])}</p><p><b>Adapter:</b> {_esc(ex['adapter'])}</p></details>")
    return "<h2>Examples</h2>" + "".join(parts) if parts else ""


def _markdown_table_html(markdown: str) -> str:
    """The few markdown constructs render_data_markdown emits (tables, bullets, paragraphs), as HTML."""
    out = []
    for block in markdown.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        if lines[0].startswith("### "):
            out.append(f"<h3>{_esc(lines[0][4:])}</h3>")
        elif lines[0].startswith("|"):
            cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
            out.append(_table(cells[0], cells[2:]))
        else:
            items = [line[2:] for line in lines if line.startswith("- ")]
            head = [line for line in lines if not line.startswith("- ")]
            out.append("".join(f"<p>{_esc(h)}</p>" for h in head)
                       + ("<ul>" + "".join(f"<li>{_esc(i)}</li>" for i in items) + "</ul>" if items else ""))
    return "".join(out)


def render_html(report: dict[str, Any], loss_curve: Path | None = None, checks_markdown: str = "") -> str:
    """``checks_markdown``: the outside-the-specialty table and its notes, as the markdown report renders them
    (passed in, not rendered here, so this module needs nothing from ``report``), shown under the gate line that
    they decide."""
    meta = report.get("meta", {})
    counts = report.get("counts", {})
    header, rows = metric_rows(report)
    parts = [
        f"<h1>Evaluation: {_esc(meta.get('adapter'))} on {_esc(meta.get('base_model'))}</h1>",
        f"<p>{report['samples']} held-out questions ({_esc(meta.get('specialty'))}, data hash "
        f"<code>{_esc(meta.get('dataset_hash'))}</code>), {counts.get('vignettes', 0)} diagnostic vignettes, "
        f"{counts.get('cited', 0)} answers with retrieved sources; {_esc(meta.get('decoding'))} decoding, "
        f"max {_esc(meta.get('max_new_tokens'))} new tokens, seed {_esc(meta.get('seed'))}, "
        f"{_esc(meta.get('date'))}.</p>",
        _table(header, rows),
        f"<p class='note'>Last column: {_esc(EXPECTED_LABEL)} — shown for comparison, not a target for a "
        "small model.</p>",
    ]
    gate = report.get("gate")
    if gate:
        parts.append("<p class='pass'>Quality gate passed" + _esc(waived_text(gate)) + ".</p>" if gate["passed"] else
                     "<p class='fail'>Quality gate FAILED: " + _esc("; ".join(gate["failures"]) + waived_text(gate))
                     + "</p>")
    if checks_markdown.strip():
        parts.append(_markdown_table_html(checks_markdown))
    chart = metrics_chart_png(report)
    if chart:
        parts.append(f"<h2>Base vs adapter</h2><img alt='bar chart of the metrics, base vs adapter' "
                     f"src='{png_data_uri(chart)}'>")
    resources = report.get("resources", {})
    r_header, r_rows = resource_rows(resources)
    if r_rows:
        settings = resources.get("settings", {})
        memory = resources.get("memory", {})
        summary = resources.get("summary", {})
        parts.append(f"<h2>Latency and memory</h2><p>{_esc(settings.get('answers'))} answers per variant, batch "
                     f"size 1, exactly {_esc(settings.get('max_new_tokens'))} new tokens each, on "
                     f"{_esc(settings.get('device'))}.</p>" + _table(r_header, r_rows))
        mem = [["LoRA parameters the adapter adds", format_bytes(memory.get("adapter_parameter_bytes"))],
               ["Process RSS added by attaching the adapter", format_bytes(memory.get("rss_added_by_adapter_bytes"))],
               ["Peak process RSS", format_bytes(memory.get("peak_rss_bytes"))]]
        if "gpu_added_by_adapter_mb" in summary:
            mem.append(["GPU memory added by the adapter (peak)", f"{summary['gpu_added_by_adapter_mb']:.1f} MB"])
        parts.append(_table(["Memory", "value"], mem))
        parts.append(f"<p class='note'>{_esc(EXPECTED_LABEL)}: latency +10–20 % per answer, +200–500 MB VRAM.</p>")
        parts += [f"<p class='note'>{_esc(n)}</p>" for n in resources.get("notes", [])]
    if loss_curve is not None and Path(loss_curve).is_file():
        parts.append(f"<h2>Training loss</h2><img alt='training and validation loss of the adapter' "
                     f"src='{png_data_uri(Path(loss_curve).read_bytes())}'>")
    data = render_data_markdown(report.get("evaluation_data", {}))
    if data:
        parts.append("<h2>Evaluation data</h2>" + _markdown_table_html(data))
    parts += [f"<p class='note'>Note: {_esc(n)}</p>" for n in report.get("notes", [])]
    parts.append(_examples_html(report))
    title = f"medlora evaluation — {meta.get('adapter')}"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def matrix_chart_png(matrix: dict[str, Any]) -> bytes | None:
    """One panel per metric: bars per specialty, one per adapter row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    displays = matrix.get("metric_display", {})
    metrics = [m for m in matrix["metric_labels"] if displays.get(m, "score") != "count"]
    specialties, rows = matrix["specialties"], list(matrix["cells"])
    if not metrics or not specialties:
        return None
    cols = min(3, len(metrics))
    lines = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(lines, cols, figsize=(4.2 * cols, 3.2 * lines), squeeze=False)
    width = 0.8 / max(len(rows), 1)
    for k, metric in enumerate(metrics):
        ax = axes[k // cols][k % cols]
        for i, row in enumerate(rows):
            xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(specialties))]
            ys = [matrix["cells"][row].get(s, {}).get(metric) or 0.0 for s in specialties]
            ax.bar(xs, ys, width=width, label=row)
        ax.set_xticks(range(len(specialties)))
        ax.set_xticklabels(specialties, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(matrix["metric_labels"][metric], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for k in range(len(metrics), lines * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    return _figure_png(fig)


def render_matrix_html(matrix: dict[str, Any]) -> str:
    meta = matrix.get("meta", {})
    parts = [f"<h1>Specialisation matrix on {_esc(meta.get('base_model'))}</h1>",
             "<p>Rows: the base model and each adapter; columns: the test split of each specialty. * marks the "
             "best row of a column: an adapter should win its own specialty's column.</p>"]
    chart = matrix_chart_png(matrix)
    if chart:
        parts.append(f"<img alt='metrics per adapter and specialty' src='{png_data_uri(chart)}'>")
    for _, label, header, rows in matrix_tables(matrix):
        parts.append(f"<h2>{_esc(label)}</h2>" + _table(header, rows))
    gate = matrix.get("gate")
    if gate:
        parts.append("<p class='pass'>Quality gate passed.</p>" if gate["passed"] else
                     "<p class='fail'>Quality gate FAILED: " + _esc("; ".join(gate["failures"])) + "</p>")
    parts += [f"<p class='note'>Note: {_esc(n)}</p>" for n in matrix.get("notes", [])]
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>medlora matrix</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
