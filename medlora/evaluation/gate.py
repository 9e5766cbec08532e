"""The quality gate: the adapter must beat the base by a margin the data can distinguish from noise.

With intervals (the default), a gated metric passes when the lower bound of its paired-bootstrap 95 %
interval of ``adapter − base`` is above its margin (for a lower-is-better metric, the upper bound below minus
the margin); a ``no_worse`` metric fails only when its whole interval lies below ``−tolerance`` — "not
measurably worse". Without intervals (the adapter matrix) point estimates are compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medlora.errors import MedloraError
from medlora.evaluation.bootstrap import Delta
from medlora.evaluation.metrics import get_metric


@dataclass
class GateResult:
    passed: bool
    failures: list[str] = field(default_factory=list)
    waived: list[str] = field(default_factory=list)  # checks reported but, by configuration, not gated

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "failures": self.failures, "waived": self.waived}


def waived_text(gate: Mapping[str, Any]) -> str:
    """" (not gated: …)" for the checks a report's gate left out, so a pass never hides them; "" when none."""
    waived = gate.get("waived") or []
    return f" (not gated: {'; '.join(waived)})" if waived else ""


def _higher_is_better(metric: str) -> bool:
    try:
        return get_metric(metric.partition("@")[0]).higher_is_better
    except MedloraError:
        return True


def _keys(metric: str, modes: Sequence[str] | None) -> list[str]:
    if "@" in metric or not modes:
        return [metric]
    try:
        if get_metric(metric).task == "vignette":
            return [metric]
    except MedloraError:
        return [metric]
    return [f"{metric}@{mode}" for mode in modes]


def check_gate(
    variants: Mapping[str, Mapping[str, float | None]],
    margins: Mapping[str, float],
    *,
    intervals: Mapping[str, Delta] | None = None,
    modes: Sequence[str] | None = None,
    no_worse: Mapping[str, float] | None = None,
) -> GateResult:
    failures = []
    base, adapter = variants["base"], variants["adapter"]
    for metric, margin in margins.items():
        for key in _keys(metric, modes):
            up = _higher_is_better(key)
            if intervals is not None:
                delta = intervals.get(key)
                if delta is None:
                    failures.append(f"{key}: not measured (add it to evaluation.metrics/modes, or check its samples)")
                    continue
                bound = delta.low if up else -delta.high
                if bound <= margin:
                    failures.append(f"{key}: Δ {delta.delta:+.4f}, 95 % CI [{delta.low:+.4f}, {delta.high:+.4f}] "
                                    f"(needs the {'lower' if up else 'upper'} bound beyond {margin:+.4f})")
                continue
            base_value, adapter_value = base.get(key), adapter.get(key)
            if base_value is None or adapter_value is None:
                failures.append(f"{key}: not measured (add it to evaluation.metrics, or check its samples)")
                continue
            lift = adapter_value - base_value if up else base_value - adapter_value
            if lift < margin - 1e-9:  # tolerate float rounding (0.15 - 0.10 < 0.05)
                failures.append(f"{key}: adapter {adapter_value:.4f} vs base {base_value:.4f} "
                                f"(needs a {'lift' if up else 'reduction'} of at least {margin:+.4f})")
    for metric, tolerance in (no_worse or {}).items():
        for key in _keys(metric, modes):
            delta = (intervals or {}).get(key)
            if delta is None:
                continue
            up = _higher_is_better(key)
            worst_case_is_better = delta.high if up else -delta.low
            if worst_case_is_better < -tolerance:
                failures.append(f"{key}: measurably worse, Δ {delta.delta:+.4f}, 95 % CI "
                                f"[{delta.low:+.4f}, {delta.high:+.4f}]")
    return GateResult(passed=not failures, failures=failures)
