"""Reader for BIO-tagged slot-filling folders (SNIPS, ATIS layout).

Layout (SNIPS: Coucke et al. 2018, split of Goo et al. 2018, as distributed by
SlotGated-SLU / JointBERT; see ``shared/data/snips/SOURCE.md``): a folder with
three line-aligned UTF-8 files

* ``seq.in``  - space separated tokens, e.g. ``listen to westbam alumb allergic on google music``
* ``seq.out`` - one IOB2 tag per token, e.g. ``O O B-artist O B-album O B-service I-service``
  (lines may end with a trailing space)
* ``label``   - the intent, e.g. ``PlayMusic``

The text of an example is its tokens joined by single spaces, and the slots
are the BIO spans converted to character offsets in that text.
"""

from __future__ import annotations

import os

from .example import DataError, Example, ReadReport, check_labels

__all__ = ["read_bio", "BIO_FILES"]

BIO_FILES = ("seq.in", "seq.out", "label")


def _read_lines(path: str) -> list[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # final newline
    return [(k, line.rstrip(b"\r")) for k, line in enumerate(lines, start=1)]


def _decode(path: str, lineno: int, raw: bytes, field: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, lineno, field, f"invalid UTF-8 ({exc.reason} at byte {exc.start})") from None


def read_bio(split_dir, *, language: str = "en", skip_bad_lines: bool = False) -> tuple[list[Example], ReadReport]:
    """Read one split folder containing ``seq.in``, ``seq.out`` and ``label``.

    Args:
        split_dir: the folder (``str`` or ``os.PathLike``), e.g. ``shared/data/snips/train``.
        language: language code stored in every example (the files carry none).
        skip_bad_lines: if True, malformed lines are skipped and counted in
            ``ReadReport.n_skipped_bad_lines`` instead of raising.

    Returns:
        ``(examples, report)``. Tags are decoded leniently with
        :func:`ondevice_nlp.tagging.bio_to_spans` (an ``I-x`` without a preceding
        ``B-x``/``I-x`` starts a new span, as in seqeval).

    Raises:
        FileNotFoundError: the folder or one of the three files is missing.
        DataError: the three files have different numbers of lines (always
            raised, even with ``skip_bad_lines``, because the files can no
            longer be paired), or (unless ``skip_bad_lines``) a line with invalid
            UTF-8, no tokens, a token/tag count mismatch, a tag that is not
            ``O``/``B-x``/``I-x``, or an empty intent (or a label or slot type with a
            control or format character). The message names the
            file, 1-based line and field (``tokens``, ``tags``, ``label`` or
            ``line count``).
    """
    from ondevice_nlp.tagging import bio_to_spans  # local import: tagging imports this package

    split_dir = os.fspath(split_dir)
    paths = {name: os.path.join(split_dir, name) for name in BIO_FILES}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"BIO folder {split_dir!r} must contain {', '.join(BIO_FILES)}; missing: {', '.join(missing)}"
        )
    lines = {name: _read_lines(p) for name, p in paths.items()}
    counts = {name: len(v) for name, v in lines.items()}
    if len(set(counts.values())) != 1:
        short = min(counts, key=counts.get)
        long_ = max(counts, key=counts.get)
        raise DataError(
            paths[short],
            counts[short] + 1,
            "line count",
            f"{short} has {counts[short]} lines but {long_} has {counts[long_]} "
            f"({', '.join(f'{n}={c}' for n, c in counts.items())})",
        )
    report = ReadReport(path=split_dir)
    examples: list[Example] = []
    for (lineno, raw_in), (_, raw_out), (_, raw_label) in zip(lines["seq.in"], lines["seq.out"], lines["label"]):
        try:
            tokens = _decode(paths["seq.in"], lineno, raw_in, "tokens").split()
            tags = _decode(paths["seq.out"], lineno, raw_out, "tags").split()
            intent = _decode(paths["label"], lineno, raw_label, "label").strip()
            if not tokens:
                raise DataError(paths["seq.in"], lineno, "tokens", "no tokens")
            if len(tokens) != len(tags):
                raise DataError(paths["seq.out"], lineno, "tags", f"{len(tags)} tags for {len(tokens)} tokens")
            if not intent:
                raise DataError(paths["label"], lineno, "label", "empty intent label")
            check_labels(paths["label"], lineno, "label", [intent])
            offsets = []
            pos = 0
            for tok in tokens:
                offsets.append((pos, pos + len(tok)))
                pos += len(tok) + 1
            try:
                slots = bio_to_spans(offsets, tags)
            except ValueError as exc:
                raise DataError(paths["seq.out"], lineno, "tags", str(exc)) from None
            check_labels(paths["seq.out"], lineno, "tags", [s.type for s in slots])
        except DataError:
            if not skip_bad_lines:
                raise
            report.n_skipped_bad_lines += 1
            continue
        report.n_slots += len(slots)
        examples.append(Example(" ".join(tokens), language, intent, tuple(slots)))
    report.n_read = len(examples)
    return examples, report
