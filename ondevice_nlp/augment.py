"""Training-data augmentation for intent + slot data.

Slot-value substitution: a copy of an utterance in which every slot value is
replaced by another value of the same slot type (and language) seen in the
training set, with the slot spans moved to match; intent and the words between
slots are kept. It shows the model the same contexts with other fillers, the
standard augmentation for slot filling when a model memorises its training
values (e.g. Yoo et al. 2019, "Data Augmentation for Spoken Language
Understanding via Joint Variational Generation", which uses it as a baseline;
Dai and Adel 2020, "An Analysis of Simple Data Augmentation for Named Entity
Recognition", Sec. 3, "mention replacement").
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Sequence

from .data.example import Example, Slot

__all__ = ["MAX_RATE", "substitute_slot_values"]


MAX_RATE = 8.0
"""At most eight substituted copies of each utterance."""


def substitute_slot_values(examples: Sequence[Example], rate: float, seed: int = 0) -> list[Example]:
    """New examples made by slot-value substitution (module doc).

    Args:
        examples: the training examples (their slots sorted by start, as the
            readers return them).
        rate: substituted copies per example with at least one slot, in
            [0, ``MAX_RATE``]. Up to 1 it is the share of those examples that
            get one copy; above 1, ``floor(rate)`` rounds each give every such
            example a copy and a last round gives the fractional share one more.
            Round 0 draws from ``random.Random(seed)``, so its copies do not
            depend on how many rounds follow (``rate`` 1 and 2 share the first
            round); round k > 0 from its own seed ``f"{seed}:{k}"``.
        seed: seed of the value choices (same seed, same result).

    Returns:
        The new examples only, round by round, each round in input order: same
        ``language`` and ``intent``, each slot's text replaced by a value of its
        (language, type) drawn uniformly from the slot occurrences in
        ``examples``, slot offsets into the new text. Examples with overlapping
        slots are not copied. Copies may repeat an original or each other when
        a slot type has few values.

    Raises:
        ValueError: ``rate`` outside [0, ``MAX_RATE``].
    """
    if not 0.0 <= rate <= MAX_RATE:
        raise ValueError(f"rate must be in [0, {MAX_RATE:g}], got {rate}")
    values: dict = defaultdict(list)
    for e in examples:
        for s in e.slots:
            values[(e.language, s.type)].append(e.text[s.start:s.end])
    out: list[Example] = []
    k = 0
    while rate - k > 0:
        rng = random.Random(seed if k == 0 else f"{seed}:{k}")
        out += _substitute_round(examples, values, min(1.0, rate - k), rng)
        k += 1
    return out


def _substitute_round(examples: Sequence[Example], values: dict, share: float,
                      rng: random.Random) -> list[Example]:
    """One round of ``substitute_slot_values``: a copy of ``share`` of the examples with slots."""
    out = []
    for e in examples:
        if not e.slots or rng.random() >= share:
            continue
        slots = sorted(e.slots, key=lambda s: (s.start, s.end))
        if any(b.start < a.end for a, b in zip(slots, slots[1:])):
            continue
        text, pos, new = "", 0, []
        for s in slots:
            text += e.text[pos:s.start]
            value = rng.choice(values[(e.language, s.type)])
            new.append(Slot(s.type, len(text), len(text) + len(value)))
            text += value
            pos = s.end
        text += e.text[pos:]
        out.append(dataclasses.replace(e, text=text, slots=tuple(new)))
    return out
