"""Reader for MASSIVE (FitzGerald et al., 2022, "MASSIVE: A 1M-Example
Multilingual Natural Language Understanding Dataset with 51 Typologically-Diverse
Languages").

Format: JSON Lines, UTF-8, one object per line (see ``shared/data/massive/SOURCE.md``)::

    {"locale": "en-US", "partition": "train", "intent": "alarm_set",
     "utt": "wake me up at nine am on friday",
     "annot_utt": "wake me up at [time : nine am] on [date : friday]", ...}

Slots come from ``annot_utt``, where each slot is written ``[type : value]``.
Removing the markup from ``annot_utt`` gives ``utt`` back, so the slot offsets
are exact character offsets into ``utt``. Other keys (``row``, ``id``,
``scenario``, ``worker_id``, ...) are ignored.
"""

from __future__ import annotations

import json
import os

from .example import DataError, Example, ReadReport, Slot, check_labels
from .mtop import align_slots

__all__ = ["read_massive", "parse_annot_utt", "PARTITIONS"]

PARTITIONS = ("train", "dev", "test")
_REQUIRED = ("utt", "annot_utt", "intent", "locale", "partition")


def parse_annot_utt(annot_utt: str) -> tuple[str, list[tuple[str, int, int]]]:
    """Parse MASSIVE's ``annot_utt`` markup.

    Args:
        annot_utt: e.g. ``"wake me up at [time : nine am] on [date : friday]"``.

    Returns:
        ``(plain_text, [(type, start, end), ...])``: the utterance with the
        markup removed and each slot's character span (end exclusive) in it.
        ``type`` is everything before the first ``:`` inside the brackets,
        stripped; the value is everything after it, stripped.

    Raises:
        ValueError: unbalanced or nested brackets, or a bracket without
            ``type : value`` (empty type or value).
    """
    out: list[str] = []
    length = 0
    spans: list[tuple[str, int, int]] = []
    i = 0
    while i < len(annot_utt):
        ch = annot_utt[i]
        if ch == "]":
            raise ValueError(f"unbalanced ']' at character {i}")
        if ch != "[":
            out.append(ch)
            length += 1
            i += 1
            continue
        close = annot_utt.find("]", i + 1)
        if close == -1:
            raise ValueError(f"unbalanced '[' at character {i}")
        inner = annot_utt[i + 1 : close]
        if "[" in inner:
            raise ValueError(f"nested '[' inside the slot starting at character {i}")
        slot_type, colon, value = inner.partition(":")
        slot_type, value = slot_type.strip(), value.strip()
        if not colon or not slot_type or not value:
            raise ValueError(f"expected '[type : value]', got {annot_utt[i:close + 1]!r}")
        spans.append((slot_type, length, length + len(value)))
        out.append(value)
        length += len(value)
        i = close + 1
    return "".join(out), spans


def read_massive(
    path, *, partition: str | None = None, skip_bad_lines: bool = False
) -> tuple[list[Example], ReadReport]:
    """Read one MASSIVE locale file (``<locale>.jsonl``).

    Args:
        path: the ``.jsonl`` file (``str`` or ``os.PathLike``).
        partition: keep only rows whose ``partition`` is this value
            (``"train"``, ``"dev"`` or ``"test"``); ``None`` keeps all rows.
        skip_bad_lines: if True, malformed lines are skipped and counted in
            ``ReadReport.n_skipped_bad_lines`` instead of raising.

    Returns:
        ``(examples, report)``. ``Example.text`` is ``utt``; the language is
        the first two letters of ``locale``, lower-cased (``th-TH`` -> ``th``);
        the intent is ``intent`` unchanged. In the (not expected) case that
        ``annot_utt`` without markup differs from ``utt``, each slot value is
        located in ``utt`` with :func:`~ondevice_nlp.data.mtop.align_slots`
        and slots that cannot be found are counted as unaligned.

    Raises:
        ValueError: ``partition`` is not one of ``PARTITIONS``.
        DataError: (unless ``skip_bad_lines``) invalid UTF-8 or JSON (including
            JSON nested too deeply for Python's decoder), a line
            that is not a JSON object, a missing/non-string/empty required key
            (``utt``, ``annot_utt``, ``intent``, ``locale``, ``partition``),
            malformed ``annot_utt`` markup, an intent or slot type with a control
            or format character, an unusable locale, or an unknown
            partition value. The message names file, 1-based line and field.
        FileNotFoundError: the file does not exist.
    """
    if partition is not None and partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS} or None, got {partition!r}")
    path = os.fspath(path)
    report = ReadReport(path=path)
    examples: list[Example] = []
    with open(path, "rb") as fh:
        data = fh.read()
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        n_slots, n_unaligned, n_samples = report.n_slots, report.n_unaligned_slots, len(report.unaligned_examples)
        try:
            example = _parse_line(path, lineno, raw, partition, report)
        except DataError:
            report.n_slots, report.n_unaligned_slots = n_slots, n_unaligned
            del report.unaligned_examples[n_samples:]
            if not skip_bad_lines:
                raise
            report.n_skipped_bad_lines += 1
            continue
        if example is not None:
            examples.append(example)
    report.n_read = len(examples)
    return examples, report


def _parse_line(path: str, lineno: int, raw: bytes, partition: str | None, report: ReadReport) -> Example | None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, lineno, "line", f"invalid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(path, lineno, "json", f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:  # e.g. "[[[[..." thousands deep: the decoder recurses per level
        raise DataError(path, lineno, "json", "invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise DataError(path, lineno, "json", f"expected a JSON object, got {type(obj).__name__}")
    for key in _REQUIRED:
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            problem = "missing" if key not in obj else f"not a non-empty string ({value!r})"
            raise DataError(path, lineno, key, f"required key is {problem}")
    if obj["partition"] not in PARTITIONS:
        raise DataError(path, lineno, "partition", f"expected one of {PARTITIONS}, got {obj['partition']!r}")
    if partition is not None and obj["partition"] != partition:
        return None
    locale = obj["locale"].strip()
    if len(locale) < 2 or not locale[:2].isalpha():
        raise DataError(path, lineno, "locale", f"cannot derive a language from locale {locale!r}")
    utt = obj["utt"]
    try:
        plain, spans = parse_annot_utt(obj["annot_utt"])
    except ValueError as exc:
        raise DataError(path, lineno, "annot_utt", str(exc)) from None
    check_labels(path, lineno, "intent", [obj["intent"]])
    check_labels(path, lineno, "annot_utt", [t for t, _, _ in spans])
    slots: list[Slot] = []
    if plain == utt:
        slots = [Slot(t, s, e) for t, s, e in spans]
        report.n_slots += len(slots)
    else:
        slots = align_slots(utt, [(t, plain[s:e]) for t, s, e in spans], report, lineno)
    return Example(utt, locale[:2].lower(), obj["intent"], tuple(slots))
