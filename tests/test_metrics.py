"""Tests for ondevice_nlp.metrics.evaluate on hand-computed cases."""

from __future__ import annotations

import pytest

from ondevice_nlp.data import Example, Slot
from ondevice_nlp.metrics import evaluate, slot_counts

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
