"""Tests for ondevice_nlp.metrics.evaluate on hand-computed cases."""

from __future__ import annotations

import pytest

from ondevice_nlp.data import Example, Slot
from ondevice_nlp.metrics import error_breakdown, evaluate, slot_counts

KEYS = {"intent_accuracy", "slot_f1", "slot_precision", "slot_recall", "exact_match", "n"}


def ex(intent, *slots):
    return Example("some text here", "en", intent, tuple(Slot(*s) for s in slots))


def test_perfect():
    gold = [ex("A", ("x", 0, 4)), ex("B")]
    result = evaluate(gold, ["A", "B"], [[Slot("x", 0, 4)], []])
    assert set(result) == KEYS
    assert result == {"intent_accuracy": 1.0, "slot_f1": 1.0, "slot_precision": 1.0, "slot_recall": 1.0,
                      "exact_match": 1.0, "n": 2}
    assert isinstance(result["n"], int)


def test_hand_computed_mix():
    gold = [
        ex("A", ("x", 0, 4), ("y", 5, 9)),  # pred: x right, y wrong boundary -> 1 tp
        ex("B", ("x", 0, 4)),  # pred: intent wrong, slot right -> 1 tp
        ex("C"),  # pred: one spurious slot
        ex("D", ("z", 1, 2)),  # pred: nothing
    ]
    pred_intents = ["A", "X", "C", "D"]
    pred_slots = [
        [Slot("x", 0, 4), Slot("y", 5, 8)],
        [Slot("x", 0, 4)],
        [Slot("x", 0, 1)],
        [],
    ]
    r = evaluate(gold, pred_intents, pred_slots)
    # tp = 2, gold = 4, pred = 4
    assert r["slot_precision"] == pytest.approx(2 / 4)
    assert r["slot_recall"] == pytest.approx(2 / 4)
    assert r["slot_f1"] == pytest.approx(0.5)
    assert r["intent_accuracy"] == pytest.approx(3 / 4)
    assert r["exact_match"] == 0.0
    assert r["n"] == 4


def test_type_must_match():
    r = evaluate([ex("A", ("x", 0, 4))], ["A"], [[Slot("y", 0, 4)]])
    assert r["slot_f1"] == 0.0 and r["slot_precision"] == 0.0 and r["slot_recall"] == 0.0
    assert r["exact_match"] == 0.0 and r["intent_accuracy"] == 1.0


def test_precision_recall_differ():
    # gold 3 slots, pred 2 slots, 2 correct: P = 1, R = 2/3, F1 = 0.8
    gold = [ex("A", ("a", 0, 1), ("b", 2, 3), ("c", 4, 5))]
    r = evaluate(gold, ["A"], [[Slot("a", 0, 1), Slot("c", 4, 5)]])
    assert r["slot_precision"] == 1.0
    assert r["slot_recall"] == pytest.approx(2 / 3)
    assert r["slot_f1"] == pytest.approx(0.8)
    assert r["exact_match"] == 0.0


def test_duplicates_count_separately():
    gold = [ex("A", ("x", 0, 4), ("x", 0, 4))]
    # one copy predicted: tp 1, gold 2, pred 1
    r = evaluate(gold, ["A"], [[Slot("x", 0, 4)]])
    assert r["slot_precision"] == 1.0 and r["slot_recall"] == 0.5
    assert r["exact_match"] == 0.0
    # three copies predicted: tp 2, gold 2, pred 3
    r = evaluate(gold, ["A"], [[Slot("x", 0, 4)] * 3])
    assert r["slot_precision"] == pytest.approx(2 / 3) and r["slot_recall"] == 1.0
    assert r["exact_match"] == 0.0
    r = evaluate(gold, ["A"], [[Slot("x", 0, 4)] * 2])
    assert r["slot_f1"] == 1.0 and r["exact_match"] == 1.0


def test_order_of_predicted_slots_irrelevant_and_tuples_accepted():
    gold = [ex("A", ("x", 0, 4), ("y", 5, 9))]
    r = evaluate(gold, ["A"], [[("y", 5, 9), ("x", 0, 4)]])
    assert r["slot_f1"] == 1.0 and r["exact_match"] == 1.0


def test_empty_predictions():
    gold = [ex("A", ("x", 0, 4)), ex("B", ("y", 5, 9))]
    r = evaluate(gold, ["A", "B"], [[], []])
    assert r["slot_precision"] == 0.0 and r["slot_recall"] == 0.0 and r["slot_f1"] == 0.0
    assert r["intent_accuracy"] == 1.0 and r["exact_match"] == 0.0


def test_no_gold_slots_anywhere():
    gold = [ex("A"), ex("B")]
    r = evaluate(gold, ["A", "B"], [[], []])
    assert r["slot_f1"] == 1.0 and r["slot_precision"] == 1.0 and r["slot_recall"] == 1.0
    assert r["exact_match"] == 1.0
    r = evaluate(gold, ["A", "B"], [[Slot("x", 0, 1)], []])
    assert r["slot_precision"] == 0.0 and r["slot_recall"] == 0.0 and r["slot_f1"] == 0.0
    assert r["exact_match"] == 0.5


def test_errors():
    with pytest.raises(ValueError):
        evaluate([], [], [])
    with pytest.raises(ValueError):
        evaluate([ex("A")], ["A", "B"], [[]])
    with pytest.raises(ValueError):
        evaluate([ex("A")], ["A"], [[], []])
    with pytest.raises(TypeError):
        evaluate([ex("A")], ["A"], [["not a slot"]])


def test_slot_counts():
    assert slot_counts([Slot("x", 0, 1), Slot("x", 0, 1)], [("x", 0, 1)]) == (1, 2, 1)
    assert slot_counts([], []) == (0, 0, 0)


def test_all_values_are_fractions():
    gold = [ex("A", ("x", 0, 4)), ex("B")]
    r = evaluate(gold, ["B", "B"], [[Slot("x", 0, 3)], [Slot("y", 1, 2)]])
    for key in KEYS - {"n"}:
        assert 0.0 <= r[key] <= 1.0


def test_error_breakdown_hand_computed():
    gold = [
        ex("A", ("x", 0, 4)),                 # exact
        ex("A", ("x", 0, 4), ("y", 5, 9)),    # y: end moved -> bounds_end
        ex("B", ("x", 0, 4)),                 # intent wrong, x: other type -> gold_other_type
        ex("C", ("z", 2, 6)),                 # z: both edges moved; one spurious prediction
        ex("D", ("z", 1, 2), ("z", 1, 2)),    # one copy predicted: the other is missed
        ex("E"),                              # intent wrong, slots right
        ex("F", ("x", 3, 7)),                 # start moved -> bounds_start
    ]
    intents = ["A", "A", "X", "C", "D", "X", "F"]
    preds = [
        [Slot("x", 0, 4)],
        [Slot("x", 0, 4), Slot("y", 5, 8)],
        [Slot("w", 0, 3)],
        [Slot("z", 1, 7), Slot("q", 10, 12)],
        [Slot("z", 1, 2)],
        [],
        [Slot("x", 2, 7)],
    ]
    r = error_breakdown(gold, intents, preds)
    assert r == {
        "n": 7, "exact_match": 1, "intent_wrong": 2, "slots_wrong": 5,
        "slots_wrong_intent_right": 4, "gold_slots": 8, "gold_other_bounds": 3,
        "bounds_start": 1, "bounds_end": 1, "bounds_both": 1, "gold_other_type": 1,
        "gold_missed": 1, "pred_slots": 8, "pred_spurious": 1,
    }
    # exact match agrees with evaluate's
    assert r["exact_match"] / r["n"] == pytest.approx(evaluate(gold, intents, preds)["exact_match"])


def test_error_breakdown_errors():
    with pytest.raises(ValueError, match="empty"):
        error_breakdown([], [], [])
    with pytest.raises(ValueError, match="length mismatch"):
        error_breakdown([ex("A")], ["A", "B"], [[]])
