"""Common in-memory representation shared by all dataset readers.

Every reader (MTOP, MASSIVE, SNIPS/BIO) turns its own file format into a list of
:class:`Example` objects whose slots are *character* spans into ``Example.text``.
Everything downstream (tokenisation, BIO tagging, metrics) works on this one
representation, so the readers are the only place that knows about file formats.
"""

from __future__ import annotations

import dataclasses
import unicodedata


@dataclasses.dataclass(frozen=True)
class Slot:
    """One labelled span of an utterance.

    Attributes:
        type: slot label without any dataset prefix (MTOP ``SL:LOCATION`` is
            stored as ``"LOCATION"``; MASSIVE ``[time : nine am]`` as ``"time"``).
        start: character offset (Python ``str`` index, i.e. Unicode code points,
            not bytes) of the first character of the span in ``Example.text``.
        end: character offset one past the last character (exclusive), so the
            span's surface text is ``text[start:end]``.
    """

    type: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class Example:
    """One annotated utterance.

    Attributes:
        text: the raw utterance as written in the data file (not re-tokenised).
        language: ISO 639-1 code, lowercase (first two letters of the locale,
            e.g. ``en_XX`` -> ``"en"``, ``th-TH`` -> ``"th"``).
        intent: intent label without any dataset prefix (MTOP ``IN:GET_WEATHER``
            is stored as ``"GET_WEATHER"``).
        slots: the utterance's top-level slots as character spans, sorted by
            ``(start, end)``.
    """

    text: str
    language: str
    intent: str
    slots: tuple[Slot, ...]


class DataError(ValueError):
    """A data file is malformed.

    The message always names the file, the 1-based line number and the field
    (column / JSON key / parse part) that is wrong, e.g.
    ``"train.txt, line 12, field 'flat_parse': unbalanced brackets ..."``.
    The attributes ``path``, ``line`` and ``field`` hold the same information.
    """

    def __init__(self, path: str, line: int, field: str, message: str):
        self.path = str(path)
        self.line = line
        self.field = field
        self.detail = message
        super().__init__(f"{self.path}, line {line}, field {field!r}: {message}")

    def __reduce__(self):
        return (type(self), (self.path, self.line, self.field, self.detail))


def label_problem(label: str) -> str | None:
    """Why ``label`` (an intent or slot type) is unusable, or None if it is fine.

    A label must be non-empty and free of control, format, surrogate,
    private-use, unassigned and line/paragraph separator characters (Unicode
    categories Cc, Cf, Cs, Co, Cn, Zl, Zp): such a character in a label means
    a corrupt line (e.g. NUL bytes), and it would end up in BIO tags and model
    metadata.
    """
    if not label:
        return "empty label"
    for ch in label:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            return f"label {label!r} contains the control/format character U+{ord(ch):04X}"
    return None


def check_labels(path: str, lineno: int, field: str, labels) -> None:
    """Raise DataError(path, lineno, field) for the first unusable label (see ``label_problem``)."""
    for label in labels:
        problem = label_problem(label)
        if problem:
            raise DataError(path, lineno, field, problem)


@dataclasses.dataclass
class ReadReport:
    """Summary of reading one data file, meant for logging.

    Attributes:
        path: the file (or folder, for BIO data) that was read.
        n_read: number of examples returned.
        n_skipped_bad_lines: malformed lines skipped (only non-zero when the
            reader was called with ``skip_bad_lines=True``).
        n_unaligned_slots: slots whose value could not be located in the
            utterance; they were dropped from their example (the example is kept).
        n_slots: all top-level slots found in the returned examples, aligned
            or not; ``n_slots - n_unaligned_slots`` slots are in the examples.
        unaligned_examples: up to a few dicts describing unaligned slots
            (``line``, ``text``, ``type``, ``value``) to show in the log.
    """

    path: str
    n_read: int = 0
    n_skipped_bad_lines: int = 0
    n_unaligned_slots: int = 0
    n_slots: int = 0
    unaligned_examples: list = dataclasses.field(default_factory=list)

    #: how many unaligned samples are kept in ``unaligned_examples``.
    MAX_SAMPLES = 5

    @property
    def n_aligned_slots(self) -> int:
        """Slots present in the returned examples (``n_slots - n_unaligned_slots``)."""
        return self.n_slots - self.n_unaligned_slots

    @property
    def aligned_fraction(self) -> float:
        """Fraction of slots that were aligned; 1.0 when the file has no slots."""
        return self.n_aligned_slots / self.n_slots if self.n_slots else 1.0

    def add_unaligned(self, line: int, text: str, slot_type: str, value: str) -> None:
        """Count one dropped slot and keep it as a sample if there is room."""
        self.n_unaligned_slots += 1
        if len(self.unaligned_examples) < self.MAX_SAMPLES:
            self.unaligned_examples.append(
                {"line": line, "text": text, "type": slot_type, "value": value}
            )

    def summary(self) -> str:
        """One-line human readable summary."""
        return (
            f"{self.path}: {self.n_read} examples, "
            f"{self.n_skipped_bad_lines} bad lines skipped, "
            f"{self.n_aligned_slots}/{self.n_slots} slots aligned "
            f"({100.0 * self.aligned_fraction:.2f}%)"
        )
