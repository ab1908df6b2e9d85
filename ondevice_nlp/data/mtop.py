"""Reader for MTOP (Li et al., EACL 2021, "MTOP: A Comprehensive Multilingual
Task-Oriented Semantic Parsing Benchmark").

Two TSV layouts (UTF-8, no header, one utterance per line) are accepted; the
layout is detected per file from the column counts of its lines: the layout of
most lines with 5 or 8 columns (on a tie, the first such line's), so a single
malformed line cannot make a whole file unreadable with ``skip_bad_lines``:

* **5-column flat-parse layout** (the CoF-CoT re-format described in
  ``shared/data/mtop/SOURCE.md``)::

      utterance <TAB> flat_parse <TAB> nested_parse <TAB> domain <TAB> locale

  ``flat_parse`` is a bracketed tree such as
  ``[IN:GET_WEATHER [SL:LOCATION Maricopa County ] [SL:DATE_TIME for this week ] ]``.
  Its slot values are *tokenised* (``what 's``, punctuation split off; Thai is
  word-segmented with spaces inserted), so they are not always substrings of
  the utterance and must be aligned back to it (see :func:`align_value`).

* **8-column official release layout** (MTOP README)::

      id <TAB> intent <TAB> slots <TAB> utterance <TAB> domain <TAB> locale
         <TAB> decoupled_form <TAB> tokens_json

  ``intent`` is ``IN:NAME``; ``slots`` is an empty string or a comma separated
  list of ``start:end:SL:TYPE`` where ``start``/``end`` are character offsets
  into ``utterance`` (end exclusive).

For both layouts the intent is stored without its ``IN:`` prefix and slot types
without their ``SL:`` prefix, and the language is the first two letters of the
locale column, lower-cased (``en_XX`` -> ``en``).
"""

from __future__ import annotations

import bisect
import functools
import os
import unicodedata
from collections.abc import Sequence

from .example import DataError, Example, ReadReport, Slot, check_labels

__all__ = ["read_mtop", "align_value", "align_slots", "parse_flat_parse"]

FLAT_COLUMNS = ("utterance", "flat_parse", "nested_parse", "domain", "locale")
OFFICIAL_COLUMNS = (
    "id",
    "intent",
    "slots",
    "utterance",
    "domain",
    "locale",
    "decoupled_form",
    "tokens",
)


# --------------------------------------------------------------------------
# Alignment of tokenised slot values to character offsets
# --------------------------------------------------------------------------


def _is_word_char(ch: str) -> bool:
    """Letters, digits and combining marks (Devanagari/Thai vowel signs) count as word characters."""
    return unicodedata.category(ch)[0] in "LNM"


@functools.lru_cache(maxsize=256)
def _normalise(text: str, drop_space: bool, fold_case: bool) -> tuple[str, tuple[int, ...]]:
    """Return a normalised copy of ``text`` and, per normalised character, its index in ``text``."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if drop_space and ch.isspace():
            continue
        piece = ch.casefold() if fold_case else ch
        for p in piece:
            out.append(p)
            index.append(i)
    return "".join(out), tuple(index)


def _at_boundaries(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` does not cut a word on either side."""
    if start > 0 and _is_word_char(text[start]) and _is_word_char(text[start - 1]):
        return False
    if end < len(text) and _is_word_char(text[end - 1]) and _is_word_char(text[end]):
        return False
    return True


def align_value(
    text: str, value: str, begin: int = 0, avoid: Sequence[tuple[int, int]] = ()
) -> tuple[int, int] | None:
    """Locate a (possibly re-tokenised) slot value in an utterance.

    Args:
        text: the raw utterance.
        value: the slot value as written in the annotation; its words are
            separated by single spaces (e.g. ``"what 's"`` or Thai ``"วัน อังคาร"``).
        begin: character offset from which to search (the end of the previous
            slot, so that repeated values are matched left to right).
        avoid: ``(start, end)`` spans already taken by other slots; a match
            overlapping any of them is not accepted.

    Returns:
        ``(start, end)`` character offsets (end exclusive) with surrounding
        whitespace excluded, or ``None`` when the value cannot be found.

    Strategies, tried in order until one matches (the first match at or after
    ``begin`` wins):

    1. exact substring;
    2. whitespace-insensitive: the value with all whitespace removed is matched
       against the utterance with all whitespace removed and mapped back to
       original offsets (undoes ``what 's`` / ``St . Louis`` / Thai segmentation);
    3. and 4. the same two with Unicode case folding.

    All four are first tried accepting only matches that do not cut a word in
    two (so ``me`` is not found inside ``messaged``), then again accepting
    matches inside words (needed for Thai, which has no spaces between words).
    """
    value = value.strip()
    if not value:
        return None
    for whole_words in (True, False):
        for fold_case in (False, True):
            for drop_space in (False, True):
                hay, hay_index = _normalise(text, drop_space, fold_case)
                needle, _ = _normalise(value, drop_space, fold_case)
                if not needle:
                    continue
                # first normalised position whose original index is >= begin
                i = hay.find(needle, bisect.bisect_left(hay_index, begin))
                while i != -1:
                    start = hay_index[i]
                    end = hay_index[i + len(needle) - 1] + 1
                    if not any(a < end and start < b for a, b in avoid) and (
                        not whole_words or _at_boundaries(text, start, end)
                    ):
                        return start, end
                    i = hay.find(needle, i + 1)
    return None


def align_slots(
    text: str, values: Sequence[tuple[str, str]], report: ReadReport, lineno: int
) -> list[Slot]:
    """Align ``(slot_type, value)`` pairs to ``text``, left to right.

    Each value is searched with :func:`align_value` from the end of the
    previous aligned slot; if that fails (annotation order does not always
    follow the utterance) it is searched again from the start, anywhere not
    overlapping an already aligned slot. Values that still cannot be placed
    are dropped and recorded with ``report.add_unaligned``; every value
    increments ``report.n_slots``. Returns the aligned slots sorted by
    ``(start, end)``.
    """
    slots: list[Slot] = []
    begin = 0
    for slot_type, value in values:
        report.n_slots += 1
        span = align_value(text, value, begin)
        if span is None and begin > 0:
            span = align_value(text, value, 0, [(s.start, s.end) for s in slots])
        if span is None:
            report.add_unaligned(lineno, text, slot_type, value)
            continue
        slots.append(Slot(slot_type, span[0], span[1]))
        begin = max(begin, span[1])
    slots.sort(key=lambda s: (s.start, s.end))
    return slots


# --------------------------------------------------------------------------
# Bracketed parse trees
# --------------------------------------------------------------------------


def parse_flat_parse(parse: str) -> tuple[str, list[tuple[str, str]]]:
    """Parse an MTOP/TOP bracketed tree into its intent and top-level slots.

    Args:
        parse: e.g. ``"[IN:GET_WEATHER [SL:LOCATION Maricopa County ] ]"``.
            Tokens are whitespace separated; ``[IN:X`` / ``[SL:X`` open a node,
            ``]`` closes one, everything else is a word.

    Returns:
        ``(intent, [(slot_type, value), ...])`` with the ``IN:``/``SL:``
        prefixes removed. A slot containing a nested sub-intent
        (``[SL:X [IN:Y [SL:Z v ] ] ]``) is returned as a single top-level slot
        whose value is all leaf words inside it joined by single spaces. Words
        directly under the root intent are not slot material and are ignored.

    Raises:
        ValueError: unbalanced brackets, a root that is not an ``IN:`` node,
            empty labels, or content after the root node is closed.
    """
    tokens = parse.split()
    if not tokens:
        raise ValueError("empty parse")
    if not tokens[0].startswith("[IN:"):
        raise ValueError(f"parse must start with '[IN:<intent>', got {tokens[0]!r}")
    intent = tokens[0][4:]
    if not intent:
        raise ValueError("empty intent label after '[IN:'")
    slots: list[tuple[str, str]] = []
    depth = 1  # inside the root intent
    current_type: str | None = None  # top-level slot being collected
    current_words: list[str] = []
    for k, tok in enumerate(tokens[1:], start=1):
        if depth == 0:
            raise ValueError(f"unexpected {tok!r} after the root node was closed")
        if tok.startswith("[IN:") or tok.startswith("[SL:"):
            label = tok[4:]
            if not label:
                raise ValueError(f"empty label in {tok!r}")
            if depth == 1:
                if tok.startswith("[IN:"):
                    raise ValueError(f"intent {tok!r} directly inside an intent (expected a slot)")
                current_type, current_words = label, []
            depth += 1
        elif tok.startswith("["):
            raise ValueError(f"unknown node {tok!r} (expected '[IN:' or '[SL:')")
        elif tok == "]":
            depth -= 1
            if depth == 1 and current_type is not None:
                slots.append((current_type, " ".join(current_words)))
                current_type = None
        elif depth >= 2:
            current_words.append(tok)
    if depth != 0:
        raise ValueError(f"unbalanced brackets: {depth} node(s) not closed")
    return intent, slots


# --------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------


def _decode_line(path: str, lineno: int, raw: bytes, columns: tuple[str, ...] | None) -> str:
    """Decode one line as UTF-8, naming the offending column on failure."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        parts = raw.split(b"\t")
        field = "line"
        for k, part in enumerate(parts):
            try:
                part.decode("utf-8")
            except UnicodeDecodeError:
                if columns is not None and len(parts) == len(columns):
                    field = columns[k]
                else:
                    field = f"column {k + 1}"
                break
        raise DataError(path, lineno, field, f"invalid UTF-8 ({exc.reason} at byte {exc.start})") from None


def _language(path: str, lineno: int, locale: str) -> str:
    locale = locale.strip()
    if len(locale) < 2 or not locale[:2].isalpha():
        raise DataError(path, lineno, "locale", f"cannot derive a language from locale {locale!r}")
    return locale[:2].lower()


def _parse_flat_line(path: str, lineno: int, cols: list[str], report: ReadReport) -> Example:
    utterance, flat, _nested, _domain, locale = cols
    if not utterance.strip():
        raise DataError(path, lineno, "utterance", "empty utterance")
    try:
        intent, raw_slots = parse_flat_parse(flat)
    except ValueError as exc:
        raise DataError(path, lineno, "flat_parse", str(exc)) from None
    check_labels(path, lineno, "flat_parse", [intent] + [t for t, _ in raw_slots])
    language = _language(path, lineno, locale)
    slots = align_slots(utterance, raw_slots, report, lineno)
    return Example(utterance, language, intent, tuple(slots))


def _parse_official_line(path: str, lineno: int, cols: list[str], report: ReadReport) -> Example:
    _id, intent_col, slots_col, utterance, _domain, locale, _dcp, _tokens = cols
    if not utterance.strip():
        raise DataError(path, lineno, "utterance", "empty utterance")
    intent_col = intent_col.strip()
    if not intent_col.startswith("IN:") or len(intent_col) == 3:
        raise DataError(path, lineno, "intent", f"expected 'IN:<intent>', got {intent_col!r}")
    check_labels(path, lineno, "intent", [intent_col[3:]])
    language = _language(path, lineno, locale)
    slots: list[Slot] = []
    slots_col = slots_col.strip()
    for item in slots_col.split(",") if slots_col else []:
        parts = item.strip().split(":", 3)
        if len(parts) != 4 or parts[2] != "SL" or not parts[3]:
            raise DataError(path, lineno, "slots", f"expected 'start:end:SL:TYPE', got {item!r}")
        try:
            start, end = int(parts[0]), int(parts[1])
        except ValueError:
            raise DataError(path, lineno, "slots", f"bad start:end numbers in {item!r}") from None
        if not 0 <= start < end <= len(utterance):
            raise DataError(
                path,
                lineno,
                "slots",
                f"span {start}:{end} of {item!r} is outside the utterance (length {len(utterance)})",
            )
        check_labels(path, lineno, "slots", [parts[3]])
        report.n_slots += 1
        slots.append(Slot(parts[3], start, end))
    slots.sort(key=lambda s: (s.start, s.end))
    return Example(utterance, language, intent_col[3:], tuple(slots))


def _detect_layout(lines: list[bytes]) -> tuple[str, ...] | None:
    """FLAT_COLUMNS or OFFICIAL_COLUMNS: the layout of most lines that have 5 or 8
    tab-separated columns (ties: the first such line's); None if no line has."""
    counts = {len(FLAT_COLUMNS): 0, len(OFFICIAL_COLUMNS): 0}
    first = None
    for raw in lines:
        n = raw.count(b"\t") + 1
        if n in counts and raw.strip():
            counts[n] += 1
            first = first or n
    if first is None:
        return None
    best = max(counts, key=lambda n: (counts[n], n == first))
    return FLAT_COLUMNS if best == len(FLAT_COLUMNS) else OFFICIAL_COLUMNS


def read_mtop(path, *, skip_bad_lines: bool = False) -> tuple[list[Example], ReadReport]:
    """Read one MTOP TSV file (5-column flat-parse or 8-column official layout).

    Args:
        path: file path (``str`` or ``os.PathLike``), e.g.
            ``shared/data/mtop/en/train.txt``.
        skip_bad_lines: if True, malformed lines are skipped and counted in
            ``ReadReport.n_skipped_bad_lines`` instead of raising.

    Returns:
        ``(examples, report)``. Blank lines are ignored. Slots of the flat
        layout that cannot be aligned to the utterance (see
        :func:`align_value`) are dropped from their example and counted in
        ``report.n_unaligned_slots``; the example itself is kept.

    Raises:
        DataError: (unless ``skip_bad_lines``) a line has the wrong number of
            columns, is not valid UTF-8, has an unbalanced/malformed flat parse
            or one without a root ``IN:`` node, an ``intent`` column without
            ``IN:``, a ``slots`` item that is not ``start:end:SL:TYPE`` with
            integer offsets inside the utterance, an empty utterance or an
            unusable locale, or an intent / slot label with a control or format
            character (``example.label_problem``). The message names the file,
            1-based line and field.
        FileNotFoundError: the file does not exist.
    """
    path = os.fspath(path)
    report = ReadReport(path=path)
    examples: list[Example] = []
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    columns = _detect_layout(lines)
    for lineno, raw in enumerate(lines, start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            line = _decode_line(path, lineno, raw, columns)
            cols = line.split("\t")
            if columns is None or len(cols) != len(columns):
                expected = f"{len(columns)}" if columns else "5 (flat parse) or 8 (official release)"
                raise DataError(path, lineno, "columns", f"expected {expected} tab-separated columns, got {len(cols)}")
            # count slots only for lines that end up being kept
            n_slots, n_unaligned, n_samples = report.n_slots, report.n_unaligned_slots, len(report.unaligned_examples)
            try:
                if columns is FLAT_COLUMNS:
                    example = _parse_flat_line(path, lineno, cols, report)
                else:
                    example = _parse_official_line(path, lineno, cols, report)
            except DataError:
                report.n_slots, report.n_unaligned_slots = n_slots, n_unaligned
                del report.unaligned_examples[n_samples:]
                raise
        except DataError:
            if not skip_bad_lines:
                raise
            report.n_skipped_bad_lines += 1
            continue
        examples.append(example)
    report.n_read = len(examples)
    return examples, report
