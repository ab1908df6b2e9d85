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

__all__ = ["substitute_slot_values"]


def substitute_slot_values(examples: Sequence[Example], rate: float, seed: int = 0) -> list[Example]:
    """New examples made by slot-value substitution (module doc).

    Args:
        examples: the training examples (their slots sorted by start, as the
            readers return them).
        rate: the share of the examples with at least one slot that get a
            substituted copy, in [0, 1].
        seed: seed of the value choices (same seed, same result).

    Returns:
        The new examples only (in input order): same ``language`` and ``intent``,
        each slot's text replaced by a value of its (language, type) drawn
        uniformly from the slot occurrences in ``examples``, slot offsets into the
        new text. Examples with overlapping slots are not copied.

    Raises:
        ValueError: ``rate`` outside [0, 1].
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    values: dict = defaultdict(list)
    for e in examples:
        for s in e.slots:
            values[(e.language, s.type)].append(e.text[s.start:s.end])
    rng = random.Random(seed)
    out = []
    for e in examples:
        if not e.slots or rng.random() >= rate:
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
