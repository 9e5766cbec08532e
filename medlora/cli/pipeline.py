"""The pipeline commands: ``prepare``, ``train``, ``evaluate`` and ``demo`` (all three in a row)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from medlora.cli.common import (
    ConfigOpt,
    PrecisionOpt,
    PresetOpt,
    apply_precision,
    config_from,
    console,
    demo_paths,
    paths,
    run,
    setup_logging,
)
from medlora.config import MedloraConfig


def prepare(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    specialty: Annotated[str | None, typer.Option(
        help="dermatology, cardiology, radiology, a language variant (dermatology-fr) or a .txt term list")] = None,
    source: Annotated[list[str] | None, typer.Option(
        help="builtin | medquad:DIR | abstracts:CSV | hub:ID | file.jsonl")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="where the splits and manifest.json go")] = None,
    max_records: Annotated[int | None, typer.Option(help="keep a seeded sample of at most this many")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="count malformed records instead of failing")] = False,
    language: Annotated[str | None, typer.Option(
        help="en or fr: the built-in set written in that language (same as --specialty <name>-fr)")] = None,
) -> None:
    """Build train/validation/test JSONL for a specialty from the configured sources."""
    setup_logging()
    from medlora.data.prepare import prepare_dataset

    cfg = run(lambda: config_from(config, preset, {
        "data.specialty": specialty, "data.sources": source or None, "data.max_records": max_records,
        "data.seed": seed, "data.skip_invalid": skip_invalid or None}))
    if language:
        from medlora.specialties import SUPPORTED_LANGUAGES, variant_name

        if language not in SUPPORTED_LANGUAGES:
            console.print(f"[bold red]error:[/] --language {language}: use one of {', '.join(SUPPORTED_LANGUAGES)}")
            raise typer.Exit(2)
        cfg = cfg.with_overrides({"data.specialty": variant_name(cfg.data.specialty, language)})
    data_dir = output_dir or paths(cfg)[0]
    report = run(lambda: prepare_dataset(cfg.data, output_dir=data_dir))
    _print_prepare_report(report)


def _print_prepare_report(report: Any) -> None:
    from rich.table import Table

    table = Table(title=f"Prepared {report.specialty} QA data")
    table.add_column("source")
    table.add_column("records", justify="right")
    table.add_column("license")
    table.add_column("note")
    for src in report.sources:
        table.add_row(src.spec, str(src.records), src.license, src.note)
    console.print(table)
    if report.term_counts:
        top = ", ".join(f"{t} {n}" for t, n in report.term_counts.most_common(15))
        console.print(f"Terms that selected records (top 15): {top}")
    for reason, count in report.dropped.items():
        console.print(f"Dropped {count}: {reason}")
    if report.invalid:
        console.print(f"[yellow]Skipped {len(report.invalid)} invalid record(s)[/]; first: {report.invalid[0]}")
    counts = ", ".join(f"{k} {v} ({report.split_groups[k]} groups)" for k, v in report.split_counts.items())
    console.print(f"Splits: {counts}\nWritten to {report.output_dir} (manifest: {report.manifest_path})")


def train(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="prepared splits (default from config)")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="adapter directory to write")] = None,
    model: Annotated[str | None, typer.Option(help="base model: embedded:..., a hub id or a local dir")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch_size", "--batch-size")] = None,
    gradient_accumulation_steps: Annotated[int | None, typer.Option(
        "--grad_accum", "--gradient-accumulation-steps")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", "--learning-rate")] = None,
    max_train_samples: Annotated[int | None, typer.Option()] = None,
    max_length: Annotated[int | None, typer.Option()] = None,
    specialty: Annotated[str | None, typer.Option()] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint")] = False,
    precision: PrecisionOpt = None,
) -> None:
    """Train a LoRA adapter (defaults: the original note's recipe)."""
    setup_logging()
    apply_precision(precision)
    from medlora.training.trainer import train_adapter

    cfg = run(lambda: config_from(config, preset, {
        "models.llm.name": model, "training.epochs": epochs, "training.batch_size": batch_size,
        "training.gradient_accumulation_steps": gradient_accumulation_steps,
        "training.learning_rate": learning_rate, "training.max_train_samples": max_train_samples,
        "training.max_length": max_length, "data.specialty": specialty}))
    default_data, default_adapter, _ = paths(cfg)
    result = run(lambda: train_adapter(cfg, data_dir or default_data, output_dir or default_adapter, resume=resume))
    console.print(
        f"trainable params: {result.trainable_params:,} || all params: {result.total_params:,} || "
        f"trainable%: {result.trainable_percent:.4f}\n"
        f"train loss {result.train_loss:.4f}, validation loss "
        f"{result.eval_loss if result.eval_loss is None else round(result.eval_loss, 4)}, "
        f"{result.seconds:.0f} s ({result.train_tokens / max(result.seconds, 1e-9):.0f} tokens/s)\n"
        f"Adapter saved to {result.adapter_dir}"
    )


def evaluate(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    data_dir: Annotated[Path | None, typer.Option()] = None,
    adapter: Annotated[Path | None, typer.Option("--adapter", help="adapter directory")] = None,
    adapters: Annotated[str | None, typer.Option(
        "--adapters", help="matrix mode: comma-separated adapter names (dermatology,cardiology) or directories, "
        "each evaluated on every specialty's test split next to the base")] = None,
    specialties: Annotated[str | None, typer.Option(
        "--specialties", help="matrix mode: the specialty columns (default: the adapters' specialties)")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="where report.json / report.md / report.html go")] = None,
    max_samples: Annotated[int | None, typer.Option()] = None,
    max_new_tokens: Annotated[int | None, typer.Option()] = None,
    vignettes: Annotated[int | None, typer.Option(help="diagnostic vignettes (0 = skip)")] = None,
    modes: Annotated[str | None, typer.Option(
        help="comma-separated: closed (no sources), open (sources minus the split's documents), "
             "kb (full index)")] = None,
    split: Annotated[str, typer.Option(
        help="the prepared split to evaluate on (test; the sweep uses validation)")] = "test",
    latency_samples: Annotated[int | None, typer.Option(help="answers timed per variant (0 = skip)")] = None,
    specialty: Annotated[str | None, typer.Option()] = None,
    gate: Annotated[bool, typer.Option("--gate", help="exit 1 when the adapter misses the configured margins")] = False,
) -> None:
    """Compare base vs adapter on the held-out test split (or several adapters x specialties with --adapters)."""
    setup_logging()
    from medlora.evaluation.evaluate import evaluate_adapter
    from medlora.evaluation.matrix import adapter_specialty, evaluate_matrix
    from medlora.evaluation.report import print_matrix, print_table

    cfg = run(lambda: config_from(config, preset, {
        "evaluation.max_samples": max_samples, "evaluation.max_new_tokens": max_new_tokens,
        "evaluation.vignettes": vignettes,
        "evaluation.modes": [m.strip() for m in modes.split(",") if m.strip()] if modes else None,
        "evaluation.latency_samples": latency_samples, "data.specialty": specialty}))
    if adapters:
        rows: dict[str, Path] = {}
        for item in (a.strip() for a in adapters.split(",") if a.strip()):
            path = Path(item)
            if path.is_dir():
                rows[path.name] = path
            else:
                rows[item] = Path(cfg.training.output_dir.format(specialty=item))
        columns = ([s.strip() for s in specialties.split(",") if s.strip()] if specialties else
                   list(dict.fromkeys(adapter_specialty(name, path) for name, path in rows.items())))
        data_dirs = {s: Path(cfg.data.output_dir.format(specialty=s)) for s in columns}
        out = output_dir or Path(cfg.evaluation.output_dir.format(specialty="matrix"))
        matrix = run(lambda: evaluate_matrix(cfg, rows, data_dirs, out))
        print_matrix(matrix.to_json(), console)
        console.print(f"Reports written to {out} (matrix.md, matrix.html, matrix.json)")
        failed = matrix.gate is not None and not matrix.gate.passed
        failures = matrix.gate.failures if matrix.gate else []
    else:
        default_data, default_adapter, default_reports = paths(cfg)
        out = output_dir or default_reports
        report = run(lambda: evaluate_adapter(cfg, data_dir or default_data, adapter or default_adapter, out,
                                               split=split, record_in_card=split == "test"))
        print_table(report.to_json(), console)
        for note in report.notes:
            console.print(f"[yellow]note:[/] {note}")
        console.print(f"Reports written to {out} (report.md, report.html, report.json)")
        failed = report.gate is not None and not report.gate.passed
        failures = report.gate.failures if report.gate else []
    if gate and failed:
        console.print("[bold red]Quality gate failed:[/] " + "; ".join(failures))
        raise typer.Exit(1)
    if gate:
        console.print("[bold green]Quality gate passed.[/]")


def demo(
    config: ConfigOpt = None,
    full: Annotated[bool, typer.Option(
        "--full", help="config.yaml's recipe on the whole training split (hours on a CPU)")] = False,
    specialties: Annotated[str, typer.Option(help="comma-separated specialties to train")] = "dermatology",
) -> None:
    """Prepare, train and evaluate from nothing, then print where everything is."""
    setup_logging()
    from medlora.data.prepare import prepare_dataset
    from medlora.evaluation.evaluate import evaluate_adapter
    from medlora.evaluation.report import print_table
    from medlora.training.trainer import train_adapter

    preset = None if full else "demo"
    started = time.perf_counter()
    summary = []
    for specialty in [s.strip() for s in specialties.split(",") if s.strip()]:
        cfg = run(lambda: config_from(config, preset, {"data.specialty": specialty}))  # noqa: B023
        console.rule(f"[bold]{specialty}: {'full recipe' if full else 'DEMO PRESET'}")
        if not full:
            t = cfg.training
            console.print(
                f"Demo preset: {t.max_train_samples} training examples, max length {t.max_length}, "
                f"{t.epochs:g} epoch(s), batch {t.batch_size} x grad-accum {t.gradient_accumulation_steps}, "
                f"{cfg.evaluation.max_samples} test questions. `medlora demo --full` runs the full recipe.")
        data_dir, adapter_dir, report_dir = paths(cfg) if full else demo_paths(cfg)
        step = time.perf_counter()
        report = run(lambda: prepare_dataset(cfg.data, output_dir=data_dir))  # noqa: B023
        _print_prepare_report(report)
        _prepare_outside_specialties(cfg, specialty)
        steps = {"prepare": time.perf_counter() - step}
        step = time.perf_counter()
        result = run(lambda: train_adapter(cfg, data_dir, adapter_dir))  # noqa: B023
        console.print(f"trainable params: {result.trainable_params:,} / {result.total_params:,} "
                      f"({result.trainable_percent:.3f} %), {result.seconds:.0f} s")
        steps["train"] = time.perf_counter() - step
        step = time.perf_counter()
        evaluation = run(lambda: evaluate_adapter(cfg, data_dir, adapter_dir, report_dir))  # noqa: B023
        print_table(evaluation.to_json(), console)
        steps["evaluate"] = time.perf_counter() - step
        summary.append((specialty, data_dir, adapter_dir, report_dir, steps))
    console.rule("[bold green]Done")
    for specialty, data_dir, adapter_dir, report_dir, steps in summary:
        console.print(f"{specialty}: data {data_dir}  adapter {adapter_dir}  report {report_dir / 'report.md'}")
        console.print(f"{specialty} time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in steps.items()))
    console.print(f"Total time {time.perf_counter() - started:.0f} s")


def _prepare_outside_specialties(cfg: MedloraConfig, specialty: str) -> None:
    """Other specialties' splits, for the evaluation's outside-the-specialty check (seconds each)."""
    from medlora.data.prepare import prepare_dataset
    from medlora.evaluation.forgetting import outside_specialties
    from medlora.retrieval.corpus import builtin_sets

    shipped = {name for name, _ in builtin_sets()}
    for other in outside_specialties(cfg):
        out = Path(cfg.data.output_dir.format(specialty=other))
        if other == specialty or other not in shipped or (out / "manifest.json").is_file():
            continue
        run(lambda: prepare_dataset(cfg.with_overrides({"data.specialty": other}).data, output_dir=out))  # noqa: B023
        console.print(f"Prepared {other} questions for the outside-the-specialty check ({out})")


def register(app: typer.Typer) -> None:
    """Add ``prepare``, ``train``, ``evaluate`` and ``demo`` to the ``medlora`` app."""
    app.command()(prepare)
    app.command()(train)
    app.command()(evaluate)
    app.command()(demo)
