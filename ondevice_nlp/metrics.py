"""Evaluation metrics for joint intent detection and slot filling.

Metrics follow the usual reporting of MTOP (Li et al. 2021), MASSIVE
(FitzGerald et al. 2022) and SNIPS (Coucke et al. 2018; Goo et al. 2018):

* intent accuracy;
* slot precision / recall / F1, micro-averaged over all examples, on exact
  span matches as in CoNLL ``conlleval`` / ``seqeval``: a predicted slot is
  correct only if its type, start and end all equal those of a gold slot.
  Spans are compared in *character* offsets, so the result does not depend on
  the model's tokenizer;
* exact match (a.k.a. sentence / semantic accuracy): intent correct and the
  predicted slots equal the gold slots.

:func:`error_breakdown` splits the utterances that miss exact match, and the
gold slots that are not predicted, into kinds (intent, boundaries, slot type,
missed, spurious), for error analysis across languages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from ondevice_nlp.data.example import Example, Slot

__all__ = ["error_breakdown", "evaluate", "slot_counts"]


def _key(slot) -> tuple[str, int, int]:
    if isinstance(slot, Slot):
        return (slot.type, slot.start, slot.end)
    if isinstance(slot, tuple) and len(slot) == 3:
        return (slot[0], int(slot[1]), int(slot[2]))
    try:
        return (slot.type, slot.start, slot.end)
    except AttributeError:
        raise TypeError(f"expected a Slot or a (type, start, end) tuple, got {slot!r}") from None


def slot_counts(gold: Iterable, pred: Iterable) -> tuple[int, int, int]:
    """Return ``(n_correct, n_gold, n_pred)`` for one example.

    Slots are compared as multisets of ``(type, start, end)``: a slot that
    appears twice in the gold data must be predicted twice to be matched twice.
    Accepts :class:`Slot` objects or ``(type, start, end)`` tuples.
    """
    g = Counter(_key(s) for s in gold)
    p = Counter(_key(s) for s in pred)
    return sum((g & p).values()), sum(g.values()), sum(p.values())


def _check_lengths(gold: Sequence, pred_intents: Sequence, pred_slots: Sequence, what: str) -> int:
    """``len(gold)``; ValueError when it is 0 or the predictions' lengths differ from it."""
    n = len(gold)
    if n == 0:
        raise ValueError(f"cannot {what} an empty gold list")
    if len(pred_intents) != n or len(pred_slots) != n:
        raise ValueError(
            f"length mismatch: {n} gold examples, {len(pred_intents)} predicted intents, "
            f"{len(pred_slots)} predicted slot lists"
        )
    return n


def evaluate(
    gold: Sequence[Example],
    pred_intents: Sequence[str],
    pred_slots: Sequence[Iterable[Slot]],
) -> dict:
    """Score predictions against gold examples.

    Args:
        gold: the gold examples.
        pred_intents: one predicted intent label per gold example (compared
            with ``Example.intent`` by string equality).
        pred_slots: one collection of predicted slots per gold example, as
            :class:`Slot` objects or ``(type, start, end)`` character-offset tuples.

    Returns:
        ``{"intent_accuracy", "slot_precision", "slot_recall", "slot_f1",
        "exact_match"}`` as floats in [0, 1] plus ``"n"`` (int, number of
        examples). Slot scores are micro-averaged over all examples with
        multiset matching (duplicates count separately). Conventions for empty
        denominators: precision is 0 when nothing is predicted and recall is 0
        when there are no gold slots, except that precision, recall and F1 are
        all 1.0 when there are neither gold nor predicted slots (nothing to
        find, nothing wrongly found). F1 is 0 when precision + recall is 0.

    Raises:
        ValueError: ``gold`` is empty or the three arguments differ in length.
    """
    n = _check_lengths(gold, pred_intents, pred_slots, "evaluate on")
    n_intent = n_exact = 0
    correct = n_gold = n_pred = 0
    for example, intent, slots in zip(gold, pred_intents, pred_slots):
        c, g, p = slot_counts(example.slots, slots)
        correct, n_gold, n_pred = correct + c, n_gold + g, n_pred + p
        intent_ok = intent == example.intent
        n_intent += intent_ok
        n_exact += intent_ok and c == g == p
    if n_gold == 0 and n_pred == 0:
        precision = recall = f1 = 1.0
    else:
        precision = correct / n_pred if n_pred else 0.0
        recall = correct / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "intent_accuracy": n_intent / n,
        "slot_f1": f1,
        "slot_precision": precision,
        "slot_recall": recall,
        "exact_match": n_exact / n,
        "n": n,
    }


def _overlaps(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def error_breakdown(
    gold: Sequence[Example],
    pred_intents: Sequence[str],
    pred_slots: Sequence[Iterable[Slot]],
) -> dict:
    """Count the kinds of error behind a missed exact match.

    Arguments as for :func:`evaluate`. Per utterance: exact match, intent
    wrong, slots wrong (with the intent right or not). Per gold slot that no
    prediction matches exactly (type, start and end; multisets as in
    :func:`slot_counts`), the first kind that applies:

    * ``gold_other_bounds``: a wrong prediction of the same type overlaps it
      (a boundary error; ``bounds_start`` / ``bounds_end`` / ``bounds_both``
      split these by which edge of the first such prediction differs);
    * ``gold_other_type``: only wrong predictions of other types overlap it;
    * ``gold_missed``: no wrong prediction overlaps it.

    Per wrong prediction: ``pred_spurious`` when it overlaps no gold slot.

    Returns:
        A dict of ints: ``n``, ``exact_match``, ``intent_wrong``,
        ``slots_wrong``, ``slots_wrong_intent_right``, ``gold_slots``,
        ``gold_other_bounds``, ``bounds_start``, ``bounds_end``,
        ``bounds_both``, ``gold_other_type``, ``gold_missed``,
        ``pred_slots``, ``pred_spurious``.

    Raises:
        ValueError: as :func:`evaluate` (empty gold, lengths differ).
    """
    n = _check_lengths(gold, pred_intents, pred_slots, "break down errors on")
    keys = ("n", "exact_match", "intent_wrong", "slots_wrong", "slots_wrong_intent_right",
            "gold_slots", "gold_other_bounds", "bounds_start", "bounds_end", "bounds_both",
            "gold_other_type", "gold_missed", "pred_slots", "pred_spurious")
    out = dict.fromkeys(keys, 0)
    out["n"] = n
    for example, intent, slots in zip(gold, pred_intents, pred_slots):
        g = Counter(_key(s) for s in example.slots)
        p = Counter(_key(s) for s in slots)
        missed, wrong = list((g - p).elements()), list((p - g).elements())
        intent_ok = intent == example.intent
        out["gold_slots"] += sum(g.values())
        out["pred_slots"] += sum(p.values())
        out["intent_wrong"] += not intent_ok
        if not missed and not wrong:
            out["exact_match"] += intent_ok
            continue
        out["slots_wrong"] += 1
        out["slots_wrong_intent_right"] += intent_ok
        for m in missed:
            over = [w for w in wrong if _overlaps(m, w)]
            same = [w for w in over if w[0] == m[0]]
            if same:
                out["gold_other_bounds"] += 1
                start, end = same[0][1] != m[1], same[0][2] != m[2]
                edge = "bounds_both" if start and end else "bounds_start" if start else "bounds_end"
                out[edge] += 1
            elif over:
                out["gold_other_type"] += 1
            else:
                out["gold_missed"] += 1
        gold_keys = list(g)
        out["pred_spurious"] += sum(not any(_overlaps(w, k) for k in gold_keys) for w in wrong)
    return out
