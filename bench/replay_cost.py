#!/usr/bin/env python3
"""What distillation replay (``training.replay_kl_weight``) costs in training time, as a ratio from one run.

Trains the configured recipe on the same first ``--records`` training records twice in this process — replay
off, then on with the configured replay settings (or ``--weight``/``--rows``/``--tokens``) — on freshly loaded
copies of the same base, and reports wall time per optimizer step and the ratio. Both runs skip validation, so
the time is training alone. Writes ``bench/results/replay_cost.{json,md}``.

Usage::

    python bench/replay_cost.py --records 48
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench_training import _bench_data
from common import ensure_prepared, machine

from medlora.config import load_config
from medlora.models.loading import load_from_config
from medlora.training.trainer import train_adapter

RESULTS = Path(__file__).parent / "results" / "replay_cost"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--specialty", default="dermatology")
    parser.add_argument("--records", type=int, default=48)
    parser.add_argument("--weight", type=float, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    cfg = load_config(args.config).with_overrides({"data.specialty": args.specialty, "training.save_steps": 10_000})
    replay = {"training.replay_kl_weight": args.weight if args.weight is not None else cfg.training.replay_kl_weight,
              "training.replay_rows": args.rows or cfg.training.replay_rows,
              "training.replay_tokens": args.tokens or cfg.training.replay_tokens}
    if replay["training.replay_kl_weight"] <= 0:
        replay["training.replay_kl_weight"] = 1.0  # the config has replay off: measure it at weight 1
    source = ensure_prepared(cfg, args.specialty)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = _bench_data(source, Path(tmp) / "data", args.records)  # the same subset as benchmark 1
        for name, overrides in (("off", {"training.replay_kl_weight": 0.0}), ("on", replay)):
            run_cfg = cfg.with_overrides(overrides)
            result = train_adapter(run_cfg, data_dir, Path(tmp) / name, loaded=load_from_config(run_cfg.models.llm))
            rows[name] = {"seconds": round(result.seconds, 1), "steps": result.steps_run,
                          "seconds_per_step": round(result.seconds / max(result.steps_run, 1), 2)}
    ratio = rows["on"]["seconds"] / rows["off"]["seconds"]
    payload = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
               "records": args.records, "replay": {k.split(".")[1]: v for k, v in replay.items()},
               "runs": rows, "wall_ratio_on_over_off": round(ratio, 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    r = payload["replay"]
    md = (f"Distillation replay's training cost: {args.records} records, the configured recipe, replay weight "
          f"{r['replay_kl_weight']}, {r['replay_rows']} replay row(s) per micro-batch, {r['replay_tokens']} "
          "continuation tokens; both runs in one process.\n\n"
          "| replay | seconds | optimizer steps | s / step |\n| --- | --- | --- | --- |\n"
          + "".join(f"| {name} | {v['seconds']} | {v['steps']} | {v['seconds_per_step']} |\n"
                    for name, v in rows.items())
          + f"\nWall-time ratio, replay on / off: **{ratio:.2f}x**.\n")
    args.out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
