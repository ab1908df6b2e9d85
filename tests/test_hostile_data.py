"""Hostile data files (issue 5): a seeded property test of the MTOP (5- and 8-column),
MASSIVE and BIO readers over malformed lines (missing / extra columns, bad brackets,
spans out of range, latin-1 and UTF-16 bytes, empty, NUL-only and huge lines, random
bytes, deeply nested JSON, wrong JSON types, bad BIO tags, ...).

Property, for one malformed line inserted at a random place among good lines:
* strict reading either succeeds (the mutation happened to be valid, or blank) or raises
  ``DataError`` whose ``path`` is the file, ``line`` the inserted line's number and
  ``field`` a non-empty name, all three in the message;
* with ``skip_bad_lines=True`` the good lines give exactly the examples they give alone,
  and ``n_skipped_bad_lines`` is 1 when strict reading raised, 0 otherwise;
* no other exception, ever.
"""

from __future__ import annotations

import json
import random

import pytest

from ondevice_nlp.data import DataError, read_bio, read_massive, read_mtop


def _flat(utt, parse, locale="en_XX"):
    return "\t".join([utt, parse, parse, "music", locale])


def _official(utt, intent, slots, locale="en_XX"):
    return "\t".join(["7", intent, slots, utt, "music", locale, "[IN:X ]", "{}"])


GOOD_FLAT = [_flat("play jazz", "[IN:PLAY_MUSIC [SL:MUSIC_GENRE jazz ] ]"),
             _flat("wake me at 7", "[IN:CREATE_ALARM [SL:DATE_TIME at 7 ] ]"),
             _flat("ตั้ง ปลุก 7 โมง", "[IN:CREATE_ALARM [SL:DATE_TIME 7 โมง ] ]", "th_TH"),
             _flat("what's up", "[IN:GET_INFO ]")]
GOOD_OFFICIAL = [_official("play jazz", "IN:PLAY_MUSIC", "5:9:SL:MUSIC_GENRE"),
                 _official("wake me at 7", "IN:CREATE_ALARM", "8:12:SL:DATE_TIME"),
                 _official("héllo wörld", "IN:GREET", ""),
                 _official("call mom now", "IN:CALL", "5:8:SL:CONTACT,9:12:SL:DATE_TIME")]
FIELD_VALUES = ["", " ", "9", "e", "IN:", "IN", "[IN:", "[SL:X", "]", "[IN:A ] ]", "[SL:A b ]",
                "[IN:A [XX:B c ] ]", "[IN:A [SL: c ] ]", "[IN:A [IN:B ] ]", "١:٣:SL:X", "-1:3:SL:X",
                "3:1:SL:X", "0:999:SL:X", "5:5:SL:X", "a:b:SL:X", "1:3:SL:", "1:3:XX:Y", "1:3", ",,",
                "1:3:SL:X,", "0:4:SL:A,0:4:SL:B", "\x00", "\u2028", "x" * 5000]
JUNK_LINES = [b"", b" ", b"\t", b"\r", b"\t\t\t\t", b"\t" * 7, b"\x00", b"\x00" * 10, b"\xef\xbb\xbf",
              b"\xff\xfe", b"\x80abc", b"caf\xe9\tb\xe8te"]


def _mutate_tsv(rng: random.Random, line: str) -> bytes:
    """One malformed (or accidentally valid) variant of a TSV line, as bytes without newline."""
    cols = line.split("\t")
    k = rng.randrange(12)
    if k == 0:
        cols.pop(rng.randrange(len(cols)))
    elif k == 1:
        cols.insert(rng.randrange(len(cols) + 1), rng.choice(FIELD_VALUES))
    elif k == 2:  # a stray bracket or label somewhere
        i = rng.randrange(len(line) + 1)
        return (line[:i] + rng.choice([" [", " ]", " [IN:", " [SL:", " [XX:", "[", "]", " : "])
                + line[i:]).encode()
    elif k == 3:
        return line.replace("]", "", rng.randint(1, 2)).encode()
    elif k == 4:  # latin-1 bytes
        return line.encode("latin-1", "replace") + rng.choice([b" \xe9t\xe9", b"\xe8\t", b"\xa0"])
    elif k == 5:
        return rng.choice(JUNK_LINES)
    elif k == 6:  # a huge utterance (about 1 MB)
        cols[0 if len(cols) == 5 else 3] = "jazz " * 200_000
    elif k == 7:
        return rng.randbytes(rng.randint(1, 300)).replace(b"\n", b" ")
    elif k == 8:
        cols[rng.randrange(len(cols))] = rng.choice(FIELD_VALUES)
    elif k == 9:
        return line.encode("utf-16")[:-1].replace(b"\n", b"")
    elif k == 10:
        c = rng.randrange(len(cols))
        cols[c] += rng.choice(["\x00", "\x85", "\u2028", "\r", "\x0b", "\ufeff"])
    else:
        return (line + "\t" + rng.choice(FIELD_VALUES)).encode()
    return "\t".join(cols).encode()


def _massive_row(**kw):
    row = dict(id="1", locale="en-US", partition="train", scenario="alarm", intent="alarm_set",
               utt="wake me up at nine am", annot_utt="wake me up at [time : nine am]")
    row.update(kw)
    return row


GOOD_MASSIVE = [json.dumps(_massive_row()),
                json.dumps(_massive_row(utt="สวัสดี ตอน เช้า", annot_utt="สวัสดี [time : ตอน เช้า]",
                                        locale="th-TH", intent="greet"), ensure_ascii=False),
                json.dumps(_massive_row(utt="no slots here", annot_utt="no slots here"))]
JSON_VALUES = [None, 1, 1.5, True, [], {}, "", " ", "\x00", "x" * 100_000]
ANNOT_VALUES = ["[", "]", "[a]", "[ : x]", "[t : ]", "[[t : x]]", "[t : x", "x]", "[t: x] [u: y",
                "a [t : b] c [u : d", "[t : a [u : b] ]", "[t:x]", "\u2028[t : x]"]


def _mutate_massive(rng: random.Random) -> bytes:
    row = _massive_row()
    k = rng.randrange(9)
    if k == 0:
        del row[rng.choice(["utt", "annot_utt", "intent", "locale", "partition"])]
    elif k == 1:
        row[rng.choice(list(row))] = rng.choice(JSON_VALUES)
    elif k == 2:
        row["annot_utt"] = rng.choice(ANNOT_VALUES)
    elif k == 3:  # nested too deeply for the decoder, or merely deep
        depth = rng.choice([50, 5000, 100_000])
        return rng.choice([b"[", b"{\"a\":"]) * depth
    elif k == 4:
        return json.dumps(row).encode().replace(b"wake", b"w\xe9ke")
    elif k == 5:
        return rng.choice([b"[]", b"1", b"null", b"\"s\"", b"{", b"NaN", b"{\"utt\": NaN}", b"}{",
                           b"\x00", b"\xef\xbb\xbf{}"])
    elif k == 6:  # huge line
        row["utt"] = "nine " * 300_000
        row["annot_utt"] = "[time : " + "nine " * 300_000 + "]"
    elif k == 7:
        row["partition"] = rng.choice(["validation", "TRAIN", "dev ", ""])
    else:
        row["locale"] = rng.choice(["e", "12-US", "", "-", "é"])
    return json.dumps(row).encode()


def _check_one_bad_line(read, path, lines: list[bytes], bad_index: int, baseline):
    """The property of the module doc, for ``lines`` written to ``path`` (bad line at
    0-based ``bad_index``); ``baseline`` is the examples of the good lines alone."""
    path.write_bytes(b"\n".join(lines) + b"\n")
    try:
        examples, _ = read(path)
        raised = None
    except DataError as e:
        raised = e
        assert (e.path, e.line) == (str(path), bad_index + 1), (str(e), bad_index + 1)
        assert e.field and path.name in str(e) and f"line {e.line}" in str(e)
        assert repr(e.field) in str(e)
    skipped, report = read(path, skip_bad_lines=True)
    assert report.n_skipped_bad_lines == (1 if raised else 0), (raised, lines[bad_index][:200])
    if raised:
        assert skipped == baseline
        assert report.n_read == len(baseline)
    else:  # the "bad" line was blank (ignored) or valid (one more example, in its place)
        assert skipped == examples
        assert skipped == baseline or (len(skipped) == len(baseline) + 1
                                       and skipped[:bad_index] + skipped[bad_index + 1:] == baseline)
    return "error" if raised else "ok"


@pytest.mark.parametrize("layout,good", [("flat", GOOD_FLAT), ("official", GOOD_OFFICIAL)])
def test_mtop_reader_on_malformed_lines(tmp_path, layout, good):
    rng = random.Random(f"mtop-{layout}")
    path = tmp_path / f"mtop_{layout}.txt"
    base_path = tmp_path / "base.txt"
    base_path.write_text("\n".join(good) + "\n", encoding="utf-8")
    baseline, _ = read_mtop(base_path)
    assert len(baseline) == len(good)
    outcomes = {"error": 0, "ok": 0}
    for _ in range(250):
        lines = [g.encode() for g in good]
        at = rng.randrange(len(lines) + 1)
        lines.insert(at, _mutate_tsv(rng, rng.choice(good)))
        outcomes[_check_one_bad_line(read_mtop, path, lines, at, baseline)] += 1
    assert outcomes["error"] > 150, outcomes


def test_massive_reader_on_malformed_lines(tmp_path):
    rng = random.Random("massive")
    path = tmp_path / "en-US.jsonl"
    base_path = tmp_path / "base.jsonl"
    base_path.write_text("\n".join(GOOD_MASSIVE) + "\n", encoding="utf-8")
    baseline, _ = read_massive(base_path)
    assert len(baseline) == len(GOOD_MASSIVE)
    outcomes = {"error": 0, "ok": 0}
    for _ in range(250):
        lines = [g.encode() for g in GOOD_MASSIVE]
        at = rng.randrange(len(lines) + 1)
        lines.insert(at, _mutate_massive(rng))
        outcomes[_check_one_bad_line(read_massive, path, lines, at, baseline)] += 1
    assert outcomes["error"] > 180, outcomes


def test_massive_deeply_nested_json_is_a_data_error(tmp_path):
    """Regression: json.loads raised RecursionError (not DataError) on '[[[[...'."""
    path = tmp_path / "deep.jsonl"
    path.write_bytes(GOOD_MASSIVE[0].encode() + b"\n" + b"[" * 100_000 + b"\n")
    with pytest.raises(DataError, match=r"deep\.jsonl, line 2, field 'json': .*nested too deeply"):
        read_massive(path)
    examples, report = read_massive(path, skip_bad_lines=True)
    assert len(examples) == 1 and report.n_skipped_bad_lines == 1


def test_mtop_layout_survives_a_malformed_first_line(tmp_path):
    """Regression: the layout came from the first line with 5 or 8 columns, so a first line
    with 8 stray columns made every good 5-column line of the file a bad line."""
    path = tmp_path / "first.txt"
    path.write_text("\n".join(["a\tb\tc\td\te\tf\tg\th"] + GOOD_FLAT) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"first\.txt, line 1, field"):
        read_mtop(path)
    examples, report = read_mtop(path, skip_bad_lines=True)
    assert len(examples) == len(GOOD_FLAT) and report.n_skipped_bad_lines == 1


GOOD_BIO = [("play some jazz", "O O B-genre", "PlayMusic"),
            ("wake me at 7 am", "O O O B-time I-time", "SetAlarm"),
            ("hi", "O", "Greet")]
BIO_FILES = ("seq.in", "seq.out", "label")


def _mutate_bio(rng: random.Random, row: tuple[str, str, str]) -> list[bytes]:
    """A malformed (or accidentally valid) variant of one (seq.in, seq.out, label) row."""
    cells = [c.encode() for c in row]
    k = rng.randrange(8)
    if k == 0:  # token / tag count mismatch
        cells[1] = cells[1] + rng.choice([b" O", b""]) if rng.random() < 0.5 else cells[1][:-2]
    elif k == 1:
        tags = cells[1].split()
        tags[rng.randrange(len(tags))] = rng.choice([b"B-", b"I-", b"X-foo", b"b-x", b"B_x", b"-", b"B-x-"])
        cells[1] = b" ".join(tags)
    elif k == 2:
        cells[rng.randrange(3)] = rng.choice([b"caf\xe9", b"\xff", b"\x80\x80"])
    elif k == 3:
        cells[rng.randrange(3)] = rng.choice([b"", b" ", b"\t", b"\x00"])
    elif k == 4:  # huge line: 200,000 tokens
        cells = [b"w " * 200_000, b"O " * 200_000, cells[2]]
    elif k == 5:
        cells[rng.randrange(3)] = rng.randbytes(rng.randint(1, 100)).replace(b"\n", b" ")
    elif k == 6:
        cells[0] = cells[0].replace(b" ", b"\x00 ")
    else:
        cells[0] = cells[0] + b"\r"
    return cells


def test_bio_reader_on_malformed_lines(tmp_path):
    rng = random.Random("bio")
    base = tmp_path / "base"
    base.mkdir()
    for k, name in enumerate(BIO_FILES):
        (base / name).write_text("\n".join(r[k] for r in GOOD_BIO) + "\n", encoding="utf-8")
    baseline, _ = read_bio(base)
    assert len(baseline) == len(GOOD_BIO)
    outcomes = {"error": 0, "ok": 0}
    for i in range(150):
        folder = tmp_path / f"split{i}"
        folder.mkdir()
        rows = [[c.encode() for c in r] for r in GOOD_BIO]
        at = rng.randrange(len(rows) + 1)
        rows.insert(at, _mutate_bio(rng, rng.choice(GOOD_BIO)))
        for k, name in enumerate(BIO_FILES):
            (folder / name).write_bytes(b"\n".join(r[k] for r in rows) + b"\n")
        try:
            examples, _ = read_bio(folder)
            raised = None
        except DataError as e:
            raised = e
            assert e.line == at + 1 and e.path.startswith(str(folder)) and e.field, str(e)
            assert f"line {at + 1}" in str(e) and repr(e.field) in str(e)
        skipped, report = read_bio(folder, skip_bad_lines=True)
        assert report.n_skipped_bad_lines == (1 if raised else 0)
        assert skipped == (baseline if raised else examples)
        outcomes["error" if raised else "ok"] += 1
    assert outcomes["error"] > 75, outcomes


def test_bio_line_count_mismatch_is_always_an_error(tmp_path):
    """A line missing from one file cannot be skipped: the files no longer pair up."""
    for k, name in enumerate(BIO_FILES):
        (tmp_path / name).write_text("\n".join(r[k] for r in GOOD_BIO[: 3 if k else 2]) + "\n",
                                     encoding="utf-8")
    for skip in (False, True):
        with pytest.raises(DataError, match=r"seq\.in, line 3, field 'line count'"):
            read_bio(tmp_path, skip_bad_lines=skip)


def test_labels_with_control_characters_are_bad_lines(tmp_path):
    """Regression: a NUL (or other control/format character) in an intent or slot type
    was accepted as part of the label; it is now a bad line in every reader."""
    mtop = tmp_path / "nul.txt"
    mtop.write_text("\n".join([GOOD_FLAT[0], _flat("play jazz", "[IN:PLAY\x00 ]"),
                               _flat("play jazz", "[IN:PLAY [SL:GEN\u200b jazz ] ]")]) + "\n",
                    encoding="utf-8")
    with pytest.raises(DataError, match=r"nul\.txt, line 2, field 'flat_parse': .*U\+0000"):
        read_mtop(mtop)
    assert read_mtop(mtop, skip_bad_lines=True)[1].n_skipped_bad_lines == 2
    massive = tmp_path / "nul.jsonl"
    massive.write_text(json.dumps(_massive_row(intent="alarm\x00set")) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1, field 'intent': .*U\+0000"):
        read_massive(massive)
    for k, name in enumerate(BIO_FILES):
        (tmp_path / name).write_bytes(b"hi\n" if k == 0 else b"O\n" if k == 1 else b"\x00\n")
    with pytest.raises(DataError, match=r"label, line 1, field 'label'"):
        read_bio(tmp_path)
