"""The outside-the-specialty reading check: its items, its scoring and what the report says of it."""

from __future__ import annotations

from medlora.evaluation.forgetting import OutsideSet, build_reading_checks, score_outside, within_noise
from medlora.evaluation.report import reading_check_note, render_checks_markdown


def test_reading_checks_are_seeded_and_balanced(abstracts_csv):
    checks = build_reading_checks(abstracts_csv, 40, seed=7)
    assert len(checks) == 40
    assert sum(c.answer_index == 0 for c in checks) == 20  # half yes, half no
    assert [c.question for c in checks] == [c.question for c in build_reading_checks(abstracts_csv, 40, seed=7)]
    assert [c.row for c in checks] != [c.row for c in build_reading_checks(abstracts_csv, 40, seed=8)]
    assert all(c.question.endswith("Answer yes or no.") and c.condition.lower() in c.question for c in checks)


def _outside(abstracts_csv, base: list[int], adapter: list[int]) -> dict:
    checks = build_reading_checks(abstracts_csv, len(base), seed=3)
    outside = OutsideSet({}, checks, answers={"base": {}, "adapter": {}},
                         choices={"base": list(base), "adapter": list(adapter)})
    return score_outside(outside, resamples=200, seed=0)


def test_yes_rate_and_changed_judgements(abstracts_csv):
    n = 40
    truth = [c.answer_index for c in build_reading_checks(abstracts_csv, n, seed=3)]
    base = list(truth)  # reads every check right
    adapter = [1] * n  # says "No" to everything
    row = _outside(abstracts_csv, base, adapter)["reading_check_accuracy"]
    assert row["base"] == 1.0 and row["adapter"] == 0.5
    assert row["yes_rate"] == {"base": 0.5, "adapter": 0.0}
    assert row["changed"] == 0.5
    assert row["interval"]["high"] < 0
    assert within_noise({"reading_check_accuracy": row}) == [row["label"]]
    note = reading_check_note({"reading_check_accuracy": row})
    assert note is not None and "50 %" in note and "adapter to 0 %" in note
    assert note in render_checks_markdown({"outside": {"reading_check_accuracy": row}})  # under the table


def test_same_judgements_are_within_noise(abstracts_csv):
    base = [0, 1] * 20
    row = _outside(abstracts_csv, base, list(base))["reading_check_accuracy"]
    assert row["changed"] == 0.0 and row["yes_rate"]["base"] == row["yes_rate"]["adapter"]
    assert within_noise({"reading_check_accuracy": row}) == []
    assert reading_check_note({}) is None
