"""Slot-value substitution (ondevice_nlp/augment.py)."""

import pytest

from ondevice_nlp.augment import MAX_RATE, substitute_slot_values
from ondevice_nlp.data import Example, Slot


def _ex(text, intent, slots, language="en"):
    spans = []
    for t, v in slots:
        start = text.index(v)
        spans.append(Slot(t, start, start + len(v)))
    return Example(text, language, intent, tuple(sorted(spans, key=lambda s: (s.start, s.end))))


EXAMPLES = [
    _ex("wake me up at 7 am tomorrow", "CREATE_ALARM", [("DATE_TIME", "at 7 am tomorrow")]),
    _ex("set an alarm for noon", "CREATE_ALARM", [("DATE_TIME", "for noon")]),
    _ex("call Angelika Smith now", "CREATE_CALL", [("CONTACT", "Angelika Smith"), ("DATE_TIME", "now")]),
    _ex("call Bob", "CREATE_CALL", [("CONTACT", "Bob")]),
    _ex("what is the weather", "GET_WEATHER", []),
    _ex("llama a Ana", "CREATE_CALL", [("CONTACT", "Ana")], language="es"),
]


def test_substituted_copies_keep_intent_context_and_exact_spans():
    out = substitute_slot_values(EXAMPLES, 1.0, seed=3)
    # every example with slots gets one copy; the slotless one none
    assert len(out) == 5
    values = {("en", "DATE_TIME"): {"at 7 am tomorrow", "for noon", "now"},
              ("en", "CONTACT"): {"Angelika Smith", "Bob"}, ("es", "CONTACT"): {"Ana"}}
    for src, new in zip([e for e in EXAMPLES if e.slots], out):
        assert (new.intent, new.language) == (src.intent, src.language)
        assert [s.type for s in new.slots] == [s.type for s in src.slots]
        for s in new.slots:
            assert new.text[s.start:s.end] in values[(new.language, s.type)]
        # the words outside the slots are unchanged
        def outside(e):
            parts, pos = [], 0
            for s in e.slots:
                parts.append(e.text[pos:s.start])
                pos = s.end
            return parts + [e.text[pos:]]
        assert outside(new) == outside(src)
    # Spanish values never leak into English utterances and vice versa
    assert out[-1].text == "llama a Ana"
    # deterministic per seed, and different seeds give other copies
    assert substitute_slot_values(EXAMPLES, 1.0, seed=3) == out
    assert any(substitute_slot_values(EXAMPLES, 1.0, seed=s) != out for s in range(4, 10))


def test_rate_and_overlapping_slots():
    assert substitute_slot_values(EXAMPLES, 0.0) == []
    half = substitute_slot_values(EXAMPLES * 40, 0.5, seed=0)
    assert 60 <= len(half) <= 140  # about half of the 200 examples with slots
    overlapping = Example("call Bob now", "en", "CREATE_CALL",
                          (Slot("CONTACT", 5, 8), Slot("X", 6, 12)))
    assert substitute_slot_values([overlapping], 1.0) == []
    for bad in (-0.1, MAX_RATE + 0.5):
        with pytest.raises(ValueError, match="rate"):
            substitute_slot_values(EXAMPLES, bad)


def test_first_round_is_pinned():
    """Rate 1 (and the first round of any higher rate) draws exactly as before rates above 1
    existed (texts from the code of commit f1e4912), so runs made then are rebuilt the same."""
    first = ['wake me up for noon', 'set an alarm for noon', 'call Angelika Smith for noon',
             'call Bob', 'llama a Ana', 'wake me up now', 'set an alarm for noon',
             'call Bob for noon', 'call Bob', 'llama a Ana']
    assert [e.text for e in substitute_slot_values(EXAMPLES * 2, 1.0, seed=3)] == first
    assert [e.text for e in substitute_slot_values(EXAMPLES * 2, 2.5, seed=3)][:10] == first


def test_rates_above_one_give_more_rounds():
    with_slots = [e for e in EXAMPLES if e.slots] * 40  # 200 examples with slots
    two = substitute_slot_values(with_slots, 2.0, seed=1)
    assert len(two) == 400
    one = substitute_slot_values(with_slots, 1.0, seed=1)
    assert two[:200] == one
    # the second round draws other values: its copies are not the first round's again
    assert two[200:] != one
    assert [(e.intent, [s.type for s in e.slots]) for e in two[200:]] == \
        [(e.intent, [s.type for s in e.slots]) for e in with_slots]
    # a fractional last round copies about that share once more
    n = len(substitute_slot_values(with_slots, 1.5, seed=1))
    assert 260 <= n <= 340
    assert substitute_slot_values(with_slots, 2.0, seed=1) == two
    # rounds are seeded in turn, so a higher rate's copies start with a lower one's: a teacher
    # file written for --augment-slots 3 also covers a rate-2 student (README)
    assert substitute_slot_values(with_slots, 3.0, seed=1)[:400] == two


def test_build_with_augment_slots(tmp_path, capsys):
    """`build --augment-slots 1` trains on the training set plus one substituted copy of each
    utterance with slots; with --teacher, the teacher must have targets for the copies: an
    ensemble teacher made with the same --augment-slots has them, one made without does not."""
    import json
    import random

    from test_pipeline import _make_examples, write_mtop

    from ondevice_nlp import cli

    from test_pipeline import CITIES, TIMES, _line

    from ondevice_nlp.augment import substitute_slot_values
    from ondevice_nlp.data import load_dataset

    rng = random.Random(0)
    counts = (("train", 52), ("eval", 10), ("test", 10))
    splits = {s: _make_examples(rng, n) for s, n in counts}
    # two slots each: their substituted copies are utterances the training set lacks
    splits["train"] += [_line(f"weather in {c} for {t}", "GET_WEATHER",
                              [("LOCATION", c), ("DATE_TIME", f"for {t}")])
                        for c, t in zip(CITIES, TIMES[::-1] * 2)]
    root = write_mtop(tmp_path / "mtop", splits)
    train = load_dataset("mtop", str(root), ["en"], "train")["en"]
    assert len(train) == 60
    assert {e.text for e in substitute_slot_values(train, 1.0)} - {e.text for e in train}
    out = tmp_path / "out"
    args = ["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
            "--size", "tiny", "--epochs", "1", "--qat-epochs", "1", "--batch-size", "16",
            "--augment-slots", "1"]
    assert cli.main([*args, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["augment_slots"] == 1.0 and m["augmented_examples"] == 60 == m["train_examples"]
    assert "slot-value substitution: 60 extra training utterances" in (out / "build.log").read_text()
    teacher = ["teacher", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
               "--teacher-model", "ensemble", "--members", str(out)]
    assert cli.main([*teacher, "--out", str(tmp_path / "t0")]) == 0
    rc = cli.main([*args, "--out", str(tmp_path / "kd"), "--teacher", str(tmp_path / "t0")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "soft_targets.npz, field 'text_hash'" in err and "--augment-slots" in err
    assert cli.main([*teacher, "--augment-slots", "1", "--out", str(tmp_path / "t1")]) == 0
    t = json.loads((tmp_path / "t1" / "teacher.json").read_text())
    assert t["augmented_examples"] == 60 and t["num_examples"] == 120
    assert cli.main([*args, "--out", str(tmp_path / "kd"), "--teacher", str(tmp_path / "t1")]) == 0
    m = json.loads((tmp_path / "kd" / "metrics.json").read_text())
    assert m["augmented_examples"] == 60 and m["distillation"]["teacher_model"] == "ensemble"
    # two copies each: the teacher labels 120 copies, and a student asking for two copies
    # cannot use the one-copy teacher (a clear error before training)
    assert cli.main([*teacher, "--augment-slots", "2", "--out", str(tmp_path / "t3")]) == 0
    t = json.loads((tmp_path / "t3" / "teacher.json").read_text())
    assert t["augmented_examples"] == 120 and t["num_examples"] == 180
    two = [*args[:-1], "2"]
    rc = cli.main([*two, "--out", str(tmp_path / "kd2"), "--teacher", str(tmp_path / "t1")])
    assert rc == 2 and "soft_targets.npz, field 'text_hash'" in capsys.readouterr().err
    rc = cli.main([*args[:-1], "9", "--out", str(tmp_path / "kd9")])
    assert rc == 2 and "rate must be in [0, 8]" in capsys.readouterr().err
    rc = cli.main(["teacher", "--dataset", "mtop", "--data-dir", str(root), "--augment-slots", "1",
                   "--out", str(tmp_path / "t2")])
    assert rc != 0 and "--teacher-model ensemble only" in capsys.readouterr().err
