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


def test_reading_checks_ask_every_topic_as_often_on_yes_as_on_no_items(abstracts_csv):
    from collections import Counter

    from medlora.data.sources.abstracts import iter_abstracts

    read = {a.row: a.condition for a in iter_abstracts(abstracts_csv)}
    checks = build_reading_checks(abstracts_csv, 120, seed=42)  # 60 pairs: every topic with every other class
    asked = Counter((c.condition, c.answer_index) for c in checks)
    assert len(asked) == 10 and set(asked.values()) == {12}  # 5 topics x yes/no, 12 each
    assert set(Counter((read[c.row], c.answer_index) for c in checks).values()) == {12}  # classes read evenly too
    assert len({c.row for c in checks}) == 120
    assert all((read[c.row] == c.condition) == (c.answer_index == 0) for c in checks)


def test_a_topic_prior_scores_chance_on_the_balanced_draw_and_not_on_the_old_one(abstracts_csv):
    """Saying "Yes" only to the most common class, without reading, beat chance on rounds 9-12's draw."""

    def prior_accuracy(checks) -> float:
        return sum((c.condition == "general pathological conditions") == (c.answer_index == 0)
                   for c in checks) / len(checks)

    assert prior_accuracy(build_reading_checks(abstracts_csv, 120, seed=42)) == 0.5
    assert prior_accuracy(build_reading_checks(abstracts_csv, 120, seed=42, balanced_topics=False)) > 0.55


def test_reading_checks_stop_when_a_class_runs_out(abstracts_csv):
    checks = build_reading_checks(abstracts_csv, 5000, seed=1)
    assert 0 < len(checks) < 5000 and len({c.row for c in checks}) == len(checks)


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


def test_auc_tells_a_shift_of_prior_from_lost_reading(abstracts_csv):
    """A base that reads the checks (its margin higher on yes items) and an adapter that only says "No" more
    keep the same AUC; an adapter whose margin ignores the abstract drops to 0.5, and the note says which."""
    checks = build_reading_checks(abstracts_csv, 40, seed=3)
    truth = [c.answer_index for c in checks]
    reads = [1.0 if t == 0 else -1.0 for t in truth]
    shy = [m - 3.0 for m in reads]  # same ranking, "No" everywhere
    blind = [-1.0] * len(truth)

    def row_for(base_margins: list[float], adapter_margins: list[float]) -> dict:
        outside = OutsideSet({}, checks, answers={"base": {}, "adapter": {}},
                             choices={"base": [0 if m > 0 else 1 for m in base_margins],
                                      "adapter": [0 if m > 0 else 1 for m in adapter_margins]},
                             margins={"base": base_margins, "adapter": adapter_margins})
        return score_outside(outside, resamples=200, seed=0)["reading_check_accuracy"]

    row = row_for(reads, shy)
    assert row["auc"]["base"]["mean"] == 1.0 and row["auc"]["adapter"]["mean"] == 1.0
    assert row["auc"]["base"]["low"] > 0.5
    assert row["interval"]["high"] < 0  # accuracy alone calls the shy adapter measurably worse
    note = reading_check_note({"reading_check_accuracy": row})
    assert note is not None and "base 1.00" in note and "above chance" not in note
    blind_row = row_for(blind, blind)
    assert blind_row["auc"]["base"]["mean"] == 0.5
    blind_note = reading_check_note({"reading_check_accuracy": blind_row})
    assert blind_note is not None and "does not read these checks above chance" in blind_note
    # Without margins (a report written before they were kept) there is no AUC and no claim about it.
    assert "auc" not in _outside(abstracts_csv, [0, 1] * 20, [0, 1] * 20)["reading_check_accuracy"]


def test_the_gate_can_leave_out_a_reading_check_the_base_cannot_do(abstracts_csv):
    """evaluation.gate.outside_needs_base_skill: off (the default), a reading check the adapter is measurably
    worse on fails the gate; on, it fails only where the base reads above chance, and the report says what
    was left out."""
    from medlora.config import GateConfig
    from medlora.evaluation.gate import waived_text

    checks = build_reading_checks(abstracts_csv, 40, seed=3)
    truth = [c.answer_index for c in checks]
    blind = [0.5 if i % 4 in (0, 1) else -0.5 for i in range(len(truth))]  # "Yes" to half, blind to the truth
    lucky_base = [0 if t == 0 else 1 for t in truth]  # right everywhere, but its margins read nothing
    outside = OutsideSet({}, checks, answers={"base": {}, "adapter": {}},
                         choices={"base": lucky_base, "adapter": [1] * len(truth)},
                         margins={"base": blind, "adapter": [-1.0] * len(truth)})
    rows = score_outside(outside, resamples=200, seed=0)
    label = rows["reading_check_accuracy"]["label"]
    assert GateConfig().outside_needs_base_skill is False
    assert within_noise(rows) == [label]
    assert within_noise(rows, needs_base_skill=True) == []
    reading = build_reading_checks(abstracts_csv, 40, seed=3)
    skilled = OutsideSet({}, reading, answers={"base": {}, "adapter": {}},
                         choices={"base": lucky_base, "adapter": [1] * len(truth)},
                         margins={"base": [1.0 if t == 0 else -1.0 for t in truth], "adapter": [-1.0] * len(truth)})
    assert within_noise(score_outside(skilled, resamples=200, seed=0), needs_base_skill=True) == [label]
    assert waived_text({"waived": []}) == "" and waived_text({}) == ""
    assert waived_text({"waived": [label]}) == f" (not gated: {label})"


def test_an_adapter_that_answers_against_the_truth_is_gated_even_where_the_base_reads_nothing(abstracts_csv):
    checks = build_reading_checks(abstracts_csv, 40, seed=3)
    truth = [c.answer_index for c in checks]
    blind = [0.5 if i % 4 in (0, 1) else -0.5 for i in range(len(truth))]
    against = [-1.0 if t == 0 else 1.0 for t in truth]  # "Yes" exactly where the answer is no
    outside = OutsideSet({}, checks, answers={"base": {}, "adapter": {}},
                         choices={"base": [0 if m > 0 else 1 for m in blind], "adapter": [1 - t for t in truth]},
                         margins={"base": blind, "adapter": against})
    rows = score_outside(outside, resamples=200, seed=0)
    row = rows["reading_check_accuracy"]
    assert row["auc"]["base"]["low"] <= 0.5 and row["auc"]["adapter"]["high"] < 0.5
    assert within_noise(rows, needs_base_skill=True) == [row["label"]]
    note = reading_check_note({"reading_check_accuracy": row})
    assert note is not None and "go against the abstracts" in note


def test_paired_auc_delta_flags_margins_that_stop_following_the_abstracts(abstracts_csv):
    """Both models say "No" everywhere (accuracy equal), but only the base's margins rank yes items higher."""
    from medlora.evaluation.forgetting import auc_delta_interval

    checks = build_reading_checks(abstracts_csv, 40, seed=3)
    truth = [c.answer_index for c in checks]
    reads = [-1.0 if t == 0 else -2.0 for t in truth]
    blind = [-1.5 + 0.01 * (i % 7) for i in range(len(truth))]
    outside = OutsideSet({}, checks, answers={"base": {}, "adapter": {}},
                         choices={"base": [1] * len(truth), "adapter": [1] * len(truth)},
                         margins={"base": reads, "adapter": blind})
    row = score_outside(outside, resamples=200, seed=0)["reading_check_accuracy"]
    assert row["interval"]["low"] == row["interval"]["high"] == 0  # accuracy sees nothing
    assert row["auc_delta"]["mean"] < -0.3 and row["auc_delta"]["high"] < 0
    note = reading_check_note({"reading_check_accuracy": row})
    assert note is not None and "measurably less than the base's" in note
    same = auc_delta_interval(reads, reads, truth, resamples=100)
    assert same == {"mean": 0.0, "low": 0.0, "high": 0.0}


def test_the_html_report_shows_the_checks_that_decide_its_gate(tmp_path):
    """The gate line of report.html is followed by the outside-the-specialty table and its note, as in report.md."""
    from medlora.evaluation.report import write_reports

    row = {"label": "Yes/no reading check (abstracts)", "base": 0.5, "adapter": 0.45, "n": 40,
           "interval": {"delta": -0.05, "low": -0.1, "high": -0.01, "n": 40},
           "yes_rate": {"base": 0.2, "adapter": 0.1}, "changed": 0.1}
    report = {"samples": 40, "variants": {"base": {}, "adapter": {}}, "metric_labels": {},
              "outside": {"reading_check_accuracy": row}, "gate": {"passed": False, "failures": [row["label"]]}}
    write_reports(report, tmp_path)
    html = (tmp_path / "report.html").read_text()
    gate_at = html.index("Quality gate FAILED")
    assert gate_at < html.index("<h3>Outside the specialty</h3>") < html.index("-5.0 pp [-10.0 pp, -1.0 pp]")
    assert "the adapter changes 10 % of the base&#x27;s answers" in html
