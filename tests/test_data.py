"""Tests for ondevice_nlp.data: MTOP, MASSIVE and BIO readers and load_dataset."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest

from ondevice_nlp.data import (
    DataError,
    Example,
    ReadReport,
    Slot,
    load_dataset,
    read_bio,
    read_massive,
    read_mtop,
)
from ondevice_nlp.data.massive import parse_annot_utt
from ondevice_nlp.data.mtop import align_value, parse_flat_parse


def surfaces(example: Example) -> list[tuple[str, str]]:
    return [(s.type, example.text[s.start : s.end]) for s in example.slots]


def write(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    return path


def flat_line(utt: str, parse: str, locale: str = "en_XX", domain: str = "misc") -> str:
    return "\t".join([utt, parse, parse, domain, locale])


def official_line(utt: str, intent: str, slots: str, locale: str = "en_XX", id_: str = "1") -> str:
    return "\t".join([id_, intent, slots, utt, "misc", locale, f"[{intent} ]", '{"tokens": []}'])


THAI_UTT = "ตั้งแต่วันอังคาร กลุ่มเพื่อนร่วมงานได้ส่งข้อความหาฉันบ้างไหม"
THAI_PARSE = "[IN:GET_MESSAGE [SL:DATE_TIME ตั้งแต่ วัน อังคาร ] [SL:GROUP เพื่อน ร่วม งาน ] [SL:RECIPIENT ฉัน ] ]"


# --------------------------------------------------------------------------
# MTOP, 5-column flat parse
# --------------------------------------------------------------------------


def test_mtop_flat_basic_and_word_boundaries(tmp_path):
    path = write(
        tmp_path / "train.txt",
        [
            flat_line(
                "Has Angelika Kratzer video messaged me?",
                "[IN:GET_MESSAGE [SL:CONTACT Angelika Kratzer ] [SL:TYPE_CONTENT video ] [SL:RECIPIENT me ] ]",
            )
        ],
    )
    examples, report = read_mtop(path)
    assert len(examples) == 1
    ex = examples[0]
    assert ex.intent == "GET_MESSAGE"
    assert ex.language == "en"
    assert surfaces(ex) == [("CONTACT", "Angelika Kratzer"), ("TYPE_CONTENT", "video"), ("RECIPIENT", "me")]
    # "me" must be the word, not the start of "messaged"
    assert ex.slots[2] == Slot("RECIPIENT", 36, 38)
    assert (report.n_read, report.n_slots, report.n_unaligned_slots, report.n_skipped_bad_lines) == (1, 3, 0, 0)


def test_mtop_flat_tokenised_values(tmp_path):
    path = write(
        tmp_path / "eval.txt",
        [
            flat_line("what's the weather in St. Louis?", "[IN:GET_WEATHER [SL:LOCATION St . Louis ] ]"),
            flat_line("Call John's mom", "[IN:CREATE_CALL [SL:CONTACT John 's mom ] ]"),
            flat_line("Weather in MARICOPA county", "[IN:GET_WEATHER [SL:LOCATION Maricopa County ] ]"),
            flat_line("text Matthew and Helen", "[IN:SEND_MESSAGE [SL:RECIPIENT Matthew ] [SL:RECIPIENT Helen ] ]"),
        ],
    )
    examples, report = read_mtop(path)
    assert surfaces(examples[0]) == [("LOCATION", "St. Louis")]
    assert surfaces(examples[1]) == [("CONTACT", "John's mom")]
    assert surfaces(examples[2]) == [("LOCATION", "MARICOPA county")]  # case-insensitive fallback
    assert surfaces(examples[3]) == [("RECIPIENT", "Matthew"), ("RECIPIENT", "Helen")]
    assert report.n_unaligned_slots == 0 and report.n_slots == 5


def test_mtop_flat_thai_word_segmented(tmp_path):
    path = write(tmp_path / "th" / "train.txt", [flat_line(THAI_UTT, THAI_PARSE, locale="th_XX")])
    (ex,), report = read_mtop(path)
    assert ex.language == "th"
    assert surfaces(ex) == [("DATE_TIME", "ตั้งแต่วันอังคาร"), ("GROUP", "เพื่อนร่วมงาน"), ("RECIPIENT", "ฉัน")]
    assert ex.slots[0].start == 0
    assert report.aligned_fraction == 1.0


def test_mtop_flat_repeated_values_left_to_right(tmp_path):
    path = write(
        tmp_path / "t.txt",
        [flat_line("Steve and Steve", "[IN:SEND_MESSAGE [SL:RECIPIENT Steve ] [SL:RECIPIENT Steve ] ]")],
    )
    (ex,), _ = read_mtop(path)
    assert ex.slots == (Slot("RECIPIENT", 0, 5), Slot("RECIPIENT", 10, 15))


def test_mtop_flat_out_of_order_annotation(tmp_path):
    path = write(
        tmp_path / "t.txt",
        [flat_line("tomorrow remind me", "[IN:CREATE_REMINDER [SL:PERSON_REMINDED me ] [SL:DATE_TIME tomorrow ] ]")],
    )
    (ex,), report = read_mtop(path)
    # slots are returned sorted by position
    assert surfaces(ex) == [("DATE_TIME", "tomorrow"), ("PERSON_REMINDED", "me")]
    assert report.n_unaligned_slots == 0


def test_mtop_flat_nested_sub_intent(tmp_path):
    parse = (
        "[IN:CREATE_REMINDER [SL:PERSON_REMINDED me ] "
        "[SL:TODO [IN:CREATE_CALL call [SL:CONTACT mom ] ] ] [SL:DATE_TIME tomorrow ] ]"
    )
    path = write(tmp_path / "t.txt", [flat_line("remind me to call mom tomorrow", parse)])
    (ex,), report = read_mtop(path)
    assert ex.intent == "CREATE_REMINDER"
    assert surfaces(ex) == [("PERSON_REMINDED", "me"), ("TODO", "call mom"), ("DATE_TIME", "tomorrow")]
    assert report.n_slots == 3  # only top-level slots


def test_mtop_flat_unaligned_slot_dropped_example_kept(tmp_path):
    path = write(
        tmp_path / "t.txt",
        [
            flat_line("play some jazz", "[IN:PLAY_MUSIC [SL:MUSIC_GENRE jazz ] [SL:MUSIC_TYPE song ] ]"),
            flat_line("Neuigkeiten aus der MLB", "[IN:GET_STORIES_NEWS [SL:DATE_TIME Neuigkeiten ] "
                      "[SL:NEWS_TYPE Neuigkeiten ] ]", locale="de_XX"),
        ],
    )
    examples, report = read_mtop(path)
    assert len(examples) == 2
    assert surfaces(examples[0]) == [("MUSIC_GENRE", "jazz")]
    # the same word cannot be two slots: the second is dropped
    assert surfaces(examples[1]) == [("DATE_TIME", "Neuigkeiten")]
    assert report.n_slots == 4
    assert report.n_unaligned_slots == 2
    assert report.n_aligned_slots == 2
    assert report.unaligned_examples[0] == {"line": 1, "text": "play some jazz", "type": "MUSIC_TYPE", "value": "song"}
    assert "2/4 slots aligned" in report.summary()


def test_mtop_blank_lines_and_crlf_ignored(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(
        (flat_line("hi there", "[IN:GREET ]") + "\r\n\n" + flat_line("bye", "[IN:BYE ]") + "\r\n").encode()
    )
    examples, report = read_mtop(path)
    assert [e.intent for e in examples] == ["GREET", "BYE"]
    assert examples[0].slots == ()
    assert report.n_read == 2


def test_parse_flat_parse_direct():
    assert parse_flat_parse("[IN:A [SL:B x y ] [SL:C [IN:D [SL:E z ] ] ] ]") == ("A", [("B", "x y"), ("C", "z")])
    for bad in ["", "[SL:A x ]", "[IN:A [SL:B x ]", "[IN:A ] ]", "[IN:A ] extra", "[IN: ]", "[IN:A [IN:B ] ]",
                "[IN:A [XX:B x ] ]"]:
        with pytest.raises(ValueError):
            parse_flat_parse(bad)


def test_align_value_strategies():
    assert align_value("what's up", "what 's") == (0, 6)
    assert align_value("a  b", "a b") == (0, 4)
    assert align_value("Foo Bar", "foo bar") == (0, 7)
    assert align_value("messaged me", "me") == (9, 11)
    assert align_value("me me", "me", begin=1) == (3, 5)
    assert align_value("me me", "me", avoid=[(0, 2)]) == (3, 5)
    assert align_value("abc", "zz") is None
    assert align_value("abc", "  ") is None


# --------------------------------------------------------------------------
# MTOP, 8-column official release
# --------------------------------------------------------------------------


def test_mtop_official_format(tmp_path):
    thai = "ตั้งนาฬิกาปลุก 7 โมง"
    path = write(
        tmp_path / "train.txt",
        [
            official_line("Maricopa County weather for this week", "IN:GET_WEATHER",
                          "0:15:SL:LOCATION,24:37:SL:DATE_TIME"),
            official_line("I am no longer available", "IN:SET_UNAVAILABLE", ""),
            official_line(thai, "IN:CREATE_ALARM", f"15:{len(thai)}:SL:DATE_TIME", locale="th_XX"),
        ],
    )
    examples, report = read_mtop(path)
    assert [e.intent for e in examples] == ["GET_WEATHER", "SET_UNAVAILABLE", "CREATE_ALARM"]
    assert surfaces(examples[0]) == [("LOCATION", "Maricopa County"), ("DATE_TIME", "for this week")]
    assert examples[1].slots == ()
    assert examples[2].language == "th"
    assert surfaces(examples[2]) == [("DATE_TIME", "7 โมง")]
    assert report.n_slots == 3 and report.n_unaligned_slots == 0


# --------------------------------------------------------------------------
# MTOP malformed lines
# --------------------------------------------------------------------------

GOOD_FLAT = flat_line("play jazz", "[IN:PLAY_MUSIC [SL:MUSIC_GENRE jazz ] ]")
GOOD_OFFICIAL = official_line("play jazz", "IN:PLAY_MUSIC", "5:9:SL:MUSIC_GENRE")

BAD_FLAT = [
    ("wrong column count", "play jazz\t[IN:PLAY_MUSIC ]\tmusic\ten_XX", "columns"),
    ("unbalanced brackets", flat_line("play jazz", "[IN:PLAY_MUSIC [SL:MUSIC_GENRE jazz ]"), "flat_parse"),
    ("too many closing", flat_line("play jazz", "[IN:PLAY_MUSIC ] ]"), "flat_parse"),
    ("missing IN:", flat_line("play jazz", "[SL:MUSIC_GENRE jazz ]"), "flat_parse"),
    ("empty utterance", flat_line(" ", "[IN:PLAY_MUSIC ]"), "utterance"),
    ("bad locale", flat_line("play jazz", "[IN:PLAY_MUSIC ]", locale="9"), "locale"),
]
BAD_OFFICIAL = [
    ("wrong column count", "\t".join(GOOD_OFFICIAL.split("\t")[:7]), "columns"),
    ("missing IN:", official_line("play jazz", "PLAY_MUSIC", ""), "intent"),
    ("bad numbers", official_line("play jazz", "IN:PLAY_MUSIC", "5:x:SL:MUSIC_GENRE"), "slots"),
    ("not start:end:SL:TYPE", official_line("play jazz", "IN:PLAY_MUSIC", "5:9:MUSIC_GENRE"), "slots"),
    ("span outside utterance", official_line("play jazz", "IN:PLAY_MUSIC", "5:10:SL:MUSIC_GENRE"), "slots"),
    ("empty span", official_line("play jazz", "IN:PLAY_MUSIC", "5:5:SL:MUSIC_GENRE"), "slots"),
]


@pytest.mark.parametrize("good,bad,field", [(GOOD_FLAT, b, f) for _, b, f in BAD_FLAT]
                         + [(GOOD_OFFICIAL, b, f) for _, b, f in BAD_OFFICIAL],
                         ids=[f"flat-{n}" for n, _, _ in BAD_FLAT] + [f"official-{n}" for n, _, _ in BAD_OFFICIAL])
def test_mtop_malformed_line_raises_with_location(tmp_path, good, bad, field):
    path = write(tmp_path / "bad_file.txt", [good, good, bad, good])
    with pytest.raises(DataError) as info:
        read_mtop(path)
    msg = str(info.value)
    assert "bad_file.txt" in msg
    assert "line 3" in msg
    assert repr(field) in msg
    assert (info.value.line, info.value.field) == (3, field)
    assert isinstance(info.value, ValueError)

    examples, report = read_mtop(path, skip_bad_lines=True)
    assert report.n_read == len(examples) == 3
    assert report.n_skipped_bad_lines == 1
    assert report.n_slots == 3  # slots of skipped lines are not counted


@pytest.mark.parametrize("good,column,field", [(GOOD_FLAT, 0, "utterance"), (GOOD_FLAT, 1, "flat_parse"),
                                               (GOOD_OFFICIAL, 3, "utterance")])
def test_mtop_invalid_utf8(tmp_path, good, column, field):
    cols = [c.encode() for c in good.split("\t")]
    cols[column] = cols[column] + b"\xff\xfe"
    path = tmp_path / "enc.txt"
    path.write_bytes(good.encode() + b"\n" + b"\t".join(cols) + b"\n")
    with pytest.raises(DataError, match=rf"enc\.txt, line 2, field '{field}': invalid UTF-8"):
        read_mtop(path)
    examples, report = read_mtop(path, skip_bad_lines=True)
    assert len(examples) == 1 and report.n_skipped_bad_lines == 1


def test_mtop_mixed_layouts_rejected(tmp_path):
    path = write(tmp_path / "mix.txt", [GOOD_OFFICIAL, GOOD_FLAT])
    with pytest.raises(DataError, match=r"mix\.txt, line 2, field 'columns'"):
        read_mtop(path)


def test_mtop_unknown_layout(tmp_path):
    path = write(tmp_path / "x.txt", ["a\tb\tc"])
    with pytest.raises(DataError, match=r"x\.txt, line 1, field 'columns'"):
        read_mtop(path)


def test_mtop_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_mtop(tmp_path / "nope.txt")


# --------------------------------------------------------------------------
# MASSIVE
# --------------------------------------------------------------------------


def massive_row(utt, annot, intent="alarm_set", partition="train", locale="en-US", **extra):
    return json.dumps(dict(locale=locale, partition=partition, intent=intent, utt=utt, annot_utt=annot, **extra),
                      ensure_ascii=False)


def test_parse_annot_utt():
    text, spans = parse_annot_utt("wake me up at [time : nine am] on [date : friday]")
    assert text == "wake me up at nine am on friday"
    assert [(t, text[s:e]) for t, s, e in spans] == [("time", "nine am"), ("date", "friday")]
    assert parse_annot_utt("[time : 5:30 pm]")[1] == [("time", 0, 7)]
    for bad in ["a [time : x", "a time : x]", "[time x]", "[ : x]", "[time : ]", "[a : [b : c]]"]:
        with pytest.raises(ValueError):
            parse_annot_utt(bad)


def test_read_massive(tmp_path):
    path = write(
        tmp_path / "th-TH.jsonl",
        [
            massive_row("ปลุกฉันตอนเก้าโมง", "ปลุกฉันตอน[time : เก้าโมง]", locale="th-TH", row=0),
            massive_row("olly quiet", "olly quiet", intent="audio_volume_mute", partition="dev", locale="th-TH"),
            massive_row("x y", "[a : x] [b : y]", partition="test", locale="th-TH"),
        ],
    )
    examples, report = read_massive(path)
    assert [e.intent for e in examples] == ["alarm_set", "audio_volume_mute", "alarm_set"]
    assert all(e.language == "th" for e in examples)
    assert surfaces(examples[0]) == [("time", "เก้าโมง")]
    assert surfaces(examples[2]) == [("a", "x"), ("b", "y")]
    assert report.n_slots == 3 and report.n_unaligned_slots == 0

    dev, report = read_massive(path, partition="dev")
    assert [e.text for e in dev] == ["olly quiet"] and report.n_read == 1
    with pytest.raises(ValueError):
        read_massive(path, partition="eval")


def test_read_massive_utt_differs_from_annotation(tmp_path):
    path = write(tmp_path / "en-US.jsonl", [massive_row("Wake me at  nine am", "wake me at [time : nine am]")])
    (ex,), report = read_massive(path)
    assert ex.text == "Wake me at  nine am"
    assert surfaces(ex) == [("time", "nine am")]


@pytest.mark.parametrize(
    "line,field",
    [
        ('{"utt": "x"', "json"),
        ("[1, 2]", "json"),
        (json.dumps({"utt": "a", "annot_utt": "a", "intent": "i", "locale": "en-US"}), "partition"),
        (massive_row("a", "a", intent=""), "intent"),
        (massive_row("a b", "[x : a b"), "annot_utt"),
        (massive_row("a", "a", partition="validation"), "partition"),
        (massive_row("a", "a", locale="1"), "locale"),
    ],
)
def test_read_massive_malformed(tmp_path, line, field):
    path = write(tmp_path / "en-US.jsonl", [massive_row("a", "a"), line])
    with pytest.raises(DataError) as info:
        read_massive(path)
    assert re.search(rf"en-US\.jsonl, line 2, field '{field}'", str(info.value)), str(info.value)
    examples, report = read_massive(path, skip_bad_lines=True)
    assert len(examples) == 1 and report.n_skipped_bad_lines == 1


def test_read_massive_invalid_utf8(tmp_path):
    path = tmp_path / "en-US.jsonl"
    path.write_bytes(massive_row("a", "a").encode() + b"\n" + b'{"utt": "\xff"}\n')
    with pytest.raises(DataError, match=r"line 2, field 'line': invalid UTF-8"):
        read_massive(path)


# --------------------------------------------------------------------------
# BIO (SNIPS layout)
# --------------------------------------------------------------------------


def write_bio(folder: Path, seq_in, seq_out, labels) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "seq.in", seq_in)
    write(folder / "seq.out", seq_out)
    write(folder / "label", labels)
    return folder


def test_read_bio(tmp_path):
    folder = write_bio(
        tmp_path / "train",
        ["listen to westbam alumb allergic on google music", "add step to me to the 50 clásicos playlist "],
        ["O O B-artist O B-album O B-service I-service ",
         "O B-entity_name I-entity_name I-entity_name O O B-playlist I-playlist O "],
        ["PlayMusic", "AddToPlaylist"],
    )
    examples, report = read_bio(folder)
    assert examples[0].text == "listen to westbam alumb allergic on google music"
    assert examples[0].language == "en" and examples[0].intent == "PlayMusic"
    assert surfaces(examples[0]) == [("artist", "westbam"), ("album", "allergic"), ("service", "google music")]
    assert examples[1].text == "add step to me to the 50 clásicos playlist"
    assert surfaces(examples[1]) == [("entity_name", "step to me"), ("playlist", "50 clásicos")]
    assert report.n_read == 2 and report.n_slots == 5


def test_read_bio_lenient_i_tag(tmp_path):
    folder = write_bio(tmp_path / "d", ["a b c d"], ["I-x I-x B-y I-x"], ["L"])
    (ex,), _ = read_bio(folder, language="xx")
    assert ex.language == "xx"
    assert surfaces(ex) == [("x", "a b"), ("y", "c"), ("x", "d")]


@pytest.mark.parametrize(
    "seq_in,seq_out,labels,bad_file,field",
    [
        (["a b", "c d", "e"], ["O O", "O", "O"], ["L", "L", "L"], "seq.out", "tags"),
        (["a b", "c d", "e"], ["O O", "O X-y", "O"], ["L", "L", "L"], "seq.out", "tags"),
        (["a b", "  ", "e"], ["O O", "", "O"], ["L", "L", "L"], "seq.in", "tokens"),
        (["a b", "c d", "e"], ["O O", "O O", "O"], ["L", " ", "L"], "label", "label"),
    ],
)
def test_read_bio_malformed(tmp_path, seq_in, seq_out, labels, bad_file, field):
    folder = write_bio(tmp_path / "d", seq_in, seq_out, labels)
    with pytest.raises(DataError) as info:
        read_bio(folder)
    msg = str(info.value)
    assert bad_file in msg and "line 2" in msg and repr(field) in msg
    examples, report = read_bio(folder, skip_bad_lines=True)
    assert len(examples) == 2 and report.n_skipped_bad_lines == 1


def test_read_bio_line_count_mismatch(tmp_path):
    folder = write_bio(tmp_path / "d", ["a", "b", "c"], ["O", "O", "O"], ["L", "L"])
    for skip in (False, True):
        with pytest.raises(DataError, match=r"label, line 3, field 'line count'"):
            read_bio(folder, skip_bad_lines=skip)


def test_read_bio_missing_file(tmp_path):
    folder = write_bio(tmp_path / "d", ["a"], ["O"], ["L"])
    os.remove(folder / "label")
    with pytest.raises(FileNotFoundError, match="label"):
        read_bio(folder)


# --------------------------------------------------------------------------
# load_dataset
# --------------------------------------------------------------------------


@pytest.fixture
def corpora(tmp_path):
    mtop = tmp_path / "mtop"
    write(mtop / "en" / "eval.txt", [GOOD_FLAT])
    write(mtop / "th" / "eval.txt", [flat_line(THAI_UTT, THAI_PARSE, locale="th_XX")])
    massive = tmp_path / "massive"
    write(massive / "en-US.jsonl", [massive_row("a", "[x : a]", partition=p) for p in ("train", "dev", "dev", "test")])
    snips = tmp_path / "snips"
    write_bio(snips / "dev", ["a b"], ["B-x I-x"], ["L"])
    return tmp_path


def test_load_dataset_mtop(corpora, caplog):
    with caplog.at_level(logging.INFO, logger="ondevice_nlp.data"):
        data = load_dataset("mtop", corpora / "mtop", ["en", "th"], "eval")
    assert list(data) == ["en", "th"]
    assert [e.language for e in data["th"]] == ["th"]
    assert "3/3 slots aligned" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"train\.txt"):
        load_dataset("mtop", corpora / "mtop", ["en"], "train")
    with pytest.raises(FileNotFoundError, match="de"):
        load_dataset("mtop", corpora / "mtop", ["de"], "eval")


def test_load_dataset_massive(corpora):
    assert len(load_dataset("massive", corpora / "massive", ["en"], "eval")["en"]) == 2
    assert len(load_dataset("massive", corpora / "massive", ["en"], "test")["en"]) == 1
    assert len(load_dataset("massive", corpora / "massive", ["en-US"], "train")["en-US"]) == 1
    with pytest.raises(FileNotFoundError, match="fr"):
        load_dataset("massive", corpora / "massive", ["fr"], "train")


def test_load_dataset_snips(corpora):
    (ex,) = load_dataset("snips", corpora / "snips", ["en"], "eval")["en"]
    assert ex.slots == (Slot("x", 0, 3),)
    with pytest.raises(ValueError, match="English"):
        load_dataset("snips", corpora / "snips", ["en", "de"], "eval")
    with pytest.raises(FileNotFoundError, match="train"):
        load_dataset("snips", corpora / "snips", ["en"], "train")


def test_load_dataset_bad_arguments(corpora):
    with pytest.raises(ValueError):
        load_dataset("atis", corpora, ["en"], "train")
    with pytest.raises(ValueError):
        load_dataset("mtop", corpora / "mtop", ["en"], "validation")
    with pytest.raises(ValueError):
        load_dataset("mtop", corpora / "mtop", [], "eval")
    with pytest.raises(FileNotFoundError):
        load_dataset("mtop", corpora / "nowhere", ["en"], "eval")


def test_dataclasses_are_frozen_and_hashable():
    slot = Slot("A", 0, 1)
    ex = Example("x", "en", "I", (slot,))
    with pytest.raises(Exception):
        slot.start = 3  # type: ignore[misc]
    assert hash(ex) == hash(Example("x", "en", "I", (Slot("A", 0, 1),)))
    assert ReadReport(path="p").aligned_fraction == 1.0


# --------------------------------------------------------------------------
# Real data (skipped when shared/data is absent)
# --------------------------------------------------------------------------


def data_root() -> Path:
    env = os.environ.get("ONDEVICE_NLP_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require(sub: str) -> Path:
    path = data_root() / sub
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}")
    return path


MTOP_ROWS = {  # shared/data/mtop/SOURCE.md
    "en": (15667, 2235, 4386),
    "de": (13424, 1815, 3549),
    "es": (10934, 1527, 2998),
    "fr": (11815, 1577, 3193),
    "hi": (11357, 2027, 2798),
    "th": (10759, 1671, 2765),
}


@pytest.mark.parametrize("lang", sorted(MTOP_ROWS))
def test_real_mtop(lang):
    root = require("mtop")
    for split, n_rows in zip(("train", "eval", "test"), MTOP_ROWS[lang]):
        examples, report = read_mtop(root / lang / f"{split}.txt")
        assert report.n_read == n_rows, (lang, split)
        assert report.n_skipped_bad_lines == 0
        assert report.aligned_fraction >= 0.99, report.summary()
        assert all(e.language == lang for e in examples)
        for ex in examples:
            for s in ex.slots:
                assert 0 <= s.start < s.end <= len(ex.text)


def test_real_massive():
    root = require("massive")
    for locale in ("en-US", "de-DE", "es-ES", "fr-FR", "hi-IN", "th-TH"):
        examples, report = read_massive(root / f"{locale}.jsonl")
        assert report.n_read == 16521 and report.n_unaligned_slots == 0
        assert report.n_skipped_bad_lines == 0
        dev, _ = read_massive(root / f"{locale}.jsonl", partition="dev")
        assert len(dev) == 2033
        assert {e.language for e in examples} == {locale[:2]}
        if locale == "en-US":
            assert len({e.intent for e in examples}) == 60
            assert len({s.type for e in examples for s in e.slots}) == 55
            assert surfaces(examples[0]) == [("time", "nine am"), ("date", "friday")]


def test_real_snips():
    root = require("snips")
    counts = {}
    for split in ("train", "eval", "test"):
        data = load_dataset("snips", root, ["en"], split)
        counts[split] = len(data["en"])
        if split == "train":
            assert len({e.intent for e in data["en"]}) == 7
            assert len({s.type for e in data["en"] for s in e.slots}) == 39
    assert counts == {"train": 13084, "eval": 700, "test": 700}


def test_real_massive_load_dataset_partitions():
    root = require("massive")
    sizes = {split: len(load_dataset("massive", root, ["en"], split)["en"]) for split in ("train", "eval", "test")}
    assert sizes == {"train": 11514, "eval": 2033, "test": 2974}
