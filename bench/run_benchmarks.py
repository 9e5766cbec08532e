#!/usr/bin/env python3
"""``make bench``: every speed figure of medlora against a baseline measured in the same run.

Sections (see docs/BENCHMARKS.md for what each measures and its target):

  precision  the per-machine probe: fp32/bf16 matmul rates, thread counts, the chosen precision
  training   ``medlora train`` vs the original note's script (pad to 512, batch 2, whole-sequence loss)
  overhead   base / unmerged / merged adapter, paired rounds with 95 % intervals
  adapters   load, switch, RSS per adapter, throughput with 1/4/16 adapters loaded (``LLMService``)
  mixed      8 requests over 4 adapters in one batch vs 8 serial switch-and-generate calls
  bot        streamed first token and end-to-end for a question with 3 sources vs none
  start      ``medlora serve`` to a ready /health: first run (empty cache) vs warm

Writes ``bench/results/<section>.json``, ``bench/results/latest.json`` and ``latest.md``, and the results
table of ``docs/BENCHMARKS.md`` (between its ``bench:begin``/``bench:end`` markers).
Sized for about 10-15 minutes on 2 CPU cores; ``--quick`` is a smoke run of a minute or two.

Usage: ``python bench/run_benchmarks.py [--quick] [--sections training,overhead,...]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import machine  # noqa: E402

SECTIONS = ("precision", "training", "overhead", "adapters", "mixed", "bot", "start")
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "BENCHMARKS.md"
MODEL = "embedded:smollm2-135m-instruct"


def _prepare_data(work: Path) -> Path:
    """The demo preset's prepared dataset (builtin pairs, plus MedQuAD when it is beside the repository)."""
    from medlora.config import load_config
    from medlora.data.prepare import prepare_dataset

    cfg = load_config(preset="demo")
    out = work / "data"
    prepare_dataset(cfg.data, output_dir=out)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from bench_serving import adapters, bot, make_adapters, mixed, overhead, precision_quality
    from medlora.models.precision import probe

    quick = args.quick
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--sections: unknown {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    work = Path(tempfile.mkdtemp(prefix="medlora-bench-"))
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}

    def section(name: str, fn: Any) -> None:
        if name not in sections:
            return
        started = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        results[name] = fn()
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"[bench] {name} done in {timings[name]} s", flush=True)
        out = RESULTS / "quick" if quick else RESULTS
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(_jsonable(results[name]), indent=2))

    def precision_section() -> dict[str, Any]:
        result = probe(refresh=True)
        return {"precision": result.precision, "fp32_gflops": result.fp32_gflops, "bf16_gflops": result.bf16_gflops,
                "bf16_speedup": round(result.bf16_speedup, 4), "threads": result.threads,
                "gflops_by_threads": result.gflops_by_threads, "probe_seconds": result.seconds,
                "quality": (precision_quality(args.model, new_tokens=4 if quick else 32)
                            if result.precision == "bf16" or args.compare_bf16 else
                            "not measured: the probe keeps fp32 on this machine (bf16 is slower)")}

    section("precision", precision_section)
    data_dir = Path(args.data) if args.data else None
    if "training" in sections:
        import bench_training

        data_dir = data_dir or _prepare_data(work)
        section("training", lambda: bench_training.run(args.model, data_dir, work / "training",
                                                       n_train=8 if quick else args.train_records,
                                                       n_val=4 if quick else args.val_records))
    new_tokens = 4 if quick else 16
    adapter_paths: list[Path] = []
    if {"overhead", "adapters", "mixed"} & set(sections):
        adapter_paths = make_adapters(args.model, work / "adapters", 4 if quick else 16)
    empty = work / "no-adapters"
    empty.mkdir()
    section("overhead", lambda: overhead(args.model, adapter_paths[0], new_tokens=new_tokens,
                                         rounds=3 if quick else args.rounds))
    service_holder: dict[str, Any] = {}

    def adapters_section() -> dict[str, Any]:
        counts = (1, 2, 4) if quick else (1, 4, 16)
        result = adapters(args.model, adapter_paths, empty, new_tokens=new_tokens, repeats=1 if quick else args.repeats,
                          counts=counts)
        service_holder["service"] = result.pop("service")
        return result

    section("adapters", adapters_section)

    def mixed_section() -> dict[str, Any]:
        service = service_holder.get("service")
        if service is None:
            from bench_serving import _service

            service = _service(args.model, empty)
            for i, path in enumerate(adapter_paths[:4]):
                service.load_adapter(f"a{i}", path)
        return mixed(service, new_tokens=new_tokens, repeats=2 if quick else args.repeats)

    section("mixed", mixed_section)
    service_holder.clear()
    section("bot", lambda: bot(args.model, empty, new_tokens=8 if quick else 32, repeats=1 if quick else args.repeats))
    if "start" in sections:
        import bench_start

        section("start", lambda: bench_start.run(work / "start", empty, args.model, warm_repeats=1 if quick else 2))

    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "model": args.model, "quick": quick,
            "machine": machine(), "section_seconds": timings,
            "device": "cuda" if torch.cuda.is_available() else "cpu"}
    return {"meta": meta, "results": _jsonable(results)}


def from_saved_sections(args: argparse.Namespace) -> dict[str, Any]:
    """A report from ``bench/results/<section>.json`` (e.g. sections run one at a time on a busy machine)."""
    out = RESULTS / "quick" if args.quick else RESULTS
    results = {name: json.loads((out / f"{name}.json").read_text()) for name in SECTIONS
               if (out / f"{name}.json").is_file()}
    previous = json.loads((out / "latest.json").read_text()).get("meta", {}) if (out / "latest.json").is_file() else {}
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "model": args.model, "quick": args.quick,
            "machine": machine(), "device": previous.get("device", "cpu"),
            "section_seconds": previous.get("section_seconds", {})}
    return {"meta": meta, "results": results}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------------------------------------ rendering


def _ci(entry: dict[str, Any]) -> str:
    low, high = entry["ci95"]
    return f"{entry['mean']:.3f}× (95 % CI {low:.3f}–{high:.3f})"


def _lora_tensors(adapters: dict[str, Any]) -> str:
    """The LoRA tensors' own size per adapter, next to the RSS figure (older results lack it)."""
    mb = adapters.get("lora_tensors_per_adapter_mb")
    return f" (LoRA tensors {mb:.2f} MiB)" if mb is not None else ""


def render(report: dict[str, Any]) -> str:
    meta, r = report["meta"], report["results"]
    m = meta["machine"]
    lines = [f"Run {meta['date']}: {meta['model']}, {m['cpu']}, {m['cores']} cores, torch {m['torch']}"
             f"{', GPU ' + m['gpu'] if m.get('gpu') else ''}; 1-minute load average at the end {m['load_average_1m']}"
             f"{' (quick smoke run: tiny sizes, not figures)' if meta['quick'] else ''}.", "",
             "| # | what | baseline | measured | ratio | target |", "| --- | --- | --- | --- | --- | --- |"]
    add = lines.append
    if "precision" in r:
        p = r["precision"]
        add(f"| 0 | precision probe (matmul 1024²) | fp32 {p['fp32_gflops']:.1f} GFLOP/s | bf16 "
            f"{p['bf16_gflops']:.2f} GFLOP/s | bf16 {p['bf16_speedup']:.3f}× fp32 → **{p['precision']}** | bf16 only "
            "where faster |")
        if isinstance(p.get("quality"), dict):
            q = p["quality"]
            add(f"| 0 | bf16 quality | fp32 loss {q['loss_fp32']:.4f} | bf16 loss {q['loss_bf16']:.4f}, greedy answers "
                f"identical {q['greedy_identical']}/{q['prompts']} | {q['loss_difference']:+.4f} | equal quality |")
        threads = p["gflops_by_threads"]
        if len(threads) > 1:
            one, *_, many = sorted(threads, key=int)
            add(f"| 0 | threads (fp32 matmul) | {one} thread {threads[one]:.1f} GFLOP/s | {many} threads "
                f"{threads[many]:.1f} GFLOP/s | {threads[many] / threads[one]:.2f}× → **{p['threads']}** | measured |")
    if "training" in r:
        t = r["training"]
        b, md = t["baseline"], t["medlora"]
        add(f"| 1 | training tokens/s (real, non-pad) | note's script {b['tokens_per_s']:.1f} tok/s | medlora "
            f"{md['tokens_per_s']:.1f} tok/s ({md['batching']}, {md['precision']}, {md['threads']} threads) | "
            f"**{t['speedup_tokens_per_s']:.2f}×** | ≥ 2× |")
        add(f"| 1 | training wall time ({t['records']} records, {md['steps']} steps) | {b['seconds']:.1f} s | "
            f"{md['seconds']:.1f} s | {t['wall_ratio']:.3f}× | |")
        add(f"| 1 | validation loss (answer tokens, {t['validation_records']} held-out) | {b['validation_loss']:.4f} | "
            f"{md['validation_loss']:.4f} | {md['validation_loss'] - b['validation_loss']:+.4f} | ≤ baseline |")
        add(f"| 1 | share of the fp32 matmul peak ({t['fp32_peak_gflops']:.0f} GFLOP/s) | "
            f"{b['share_of_fp32_peak']:.0%} | "
            f"{md['share_of_fp32_peak']:.0%} | {md['share_of_fp32_peak'] / max(b['share_of_fp32_peak'], 1e-9):.2f}× | "
            f"≥ 60 % of the best peak ({md['share_of_best_peak']:.0%}) |")
    if "overhead" in r:
        o = r["overhead"]
        add(f"| 2 | unmerged adapter ({o['prompts']} prompts × {o['new_tokens']} tokens, "
            f"{o['rounds']} paired rounds) | base {o['median_s']['base']:.2f} s | {o['median_s']['unmerged']:.2f} s | "
            f"{_ci(o['unmerged_vs_base'])} | ≤ 1.05× |")
        add(f"| 2 | merged adapter | base {o['median_s']['base']:.2f} s | {o['median_s']['merged']:.2f} s | "
            f"{_ci(o['merged_vs_base'])} | ≤ 1.01× |")
    if "adapters" in r:
        a = r["adapters"]
        counts = list(a["tokens_per_s"])
        add(f"| 3 | adapter load from disk (r 8, {a['adapter_file_mb']:.1f} MB) | "
            f"first {a['load_ms']['first']:.0f} ms | "
            f"later {a['load_ms']['median_rest']:.0f} ms (median) | | ≤ 300 ms |")
        add(f"| 3 | switching the default adapter | | {a['switch_ms']['median']:.3f} ms "
            f"(max {a['switch_ms']['max']:.2f}) | | ≤ 50 ms |")
        add(f"| 3 | RSS per loaded adapter | RSS with 1: {a['rss_mb'][counts[0]]:.0f} MiB | with {counts[-1]}: "
            f"{a['rss_mb'][counts[-1]]:.0f} MiB | {a['rss_per_adapter_mb']:.2f} MiB each{_lora_tensors(a)} | ≤ 10 MB |")
        for count in counts[1:]:
            add(f"| 3 | throughput with {count} adapters loaded | 1 adapter {a['tokens_per_s'][counts[0]]:.1f} tok/s | "
                f"{a['tokens_per_s'][count]:.1f} tok/s | {a['throughput_vs_1'][count]:.3f}× | within 10 % |")
    if "mixed" in r:
        x = r["mixed"]
        add(f"| 4 | mixed batch ({x['requests']} requests, {x['adapters']} adapters) | 8 serial calls "
            f"{x['median_s']['serial']:.2f} s | one batch {x['median_s']['mixed']:.2f} s | "
            f"{_ci(x['speedup'])} faster | ≥ 3× |")
    if "bot" in r:
        bt = r["bot"]
        n, s3 = bt["no_sources"], bt["three_sources"]
        add(f"| 5 | bot first token (streamed, batch 1) | no sources {n['first_token_s']:.2f} s ({n['prompt_tokens']} "
            f"prompt tokens) | 3 sources {s3['first_token_s']:.2f} s ({s3['prompt_tokens']} prompt tokens) | "
            f"{bt['first_token_vs_no_sources']:.2f}× | ≤ 1.5 s |")
        add(f"| 5 | bot end to end ({bt['new_tokens']} new tokens max) | no sources {n['end_to_end_s']:.2f} s | "
            f"3 sources {s3['end_to_end_s']:.2f} s | {s3['end_to_end_s'] / n['end_to_end_s']:.2f}× | |")
    if "start" in r:
        st = r["start"]
        add(f"| 6 | `medlora serve` to ready /health | first run (empty cache) {st['cold_s']:.1f} s | warm "
            f"{st['warm_best_s']:.1f} s | {st['warm_vs_cold']:.3f}× | warm ≤ 5 s |")
    lines.append("")
    lines.append("Section wall times (s): " + ", ".join(f"{k} {v}" for k, v in meta["section_seconds"].items()) + ".")
    return "\n".join(lines) + "\n"


def update_doc(table: str, doc: Path = DOC) -> None:
    """Replace the generated block of docs/BENCHMARKS.md (the prose around it is written by hand)."""
    begin, end = "<!-- bench:begin (generated by bench/run_benchmarks.py) -->", "<!-- bench:end -->"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = text.rstrip() + f"\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{table}{end}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny sizes (does not touch the doc)")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--data", help="a prepared data directory (default: prepare the demo preset's data)")
    parser.add_argument("--train-records", type=int, default=32)
    parser.add_argument("--val-records", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=6, help="paired rounds of the overhead benchmark")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the other sections")
    parser.add_argument("--compare-bf16", action="store_true",
                        help="compare bf16 autocast with fp32 (answers, loss) even where the probe keeps fp32")
    parser.add_argument("--render-only", action="store_true",
                        help="render the table from the section JSON files already in bench/results")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/BENCHMARKS.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    report = from_saved_sections(args) if args.render_only else run(args)
    table = render(report)
    out = RESULTS / "quick" if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=2))
    (out / "latest.md").write_text("# Benchmark results\n\n" + table)
    if not args.quick and not args.no_doc:
        update_doc(table)
    print(table)


if __name__ == "__main__":
    main()
