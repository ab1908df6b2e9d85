"""Tests for ondevice_nlp.tagging: BIO label sets, span <-> BIO conversion, byte offsets,
constrained Viterbi decoding, joint intent and slot decoding."""

from __future__ import annotations

import itertools
import random
import re

import numpy as np
import pytest

from ondevice_nlp.data import Slot
from ondevice_nlp.data import Example
from ondevice_nlp.tagging import (bio_allowed_transitions, bio_labels, bio_to_spans,
                                  byte_to_char_offsets, intent_slot_tags, joint_decode,
                                  observed_transitions, pack_bits, pack_transitions,
                                  spans_to_bio, unpack_bits, unpack_transitions, viterbi_bio)


def whitespace_offsets(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def test_bio_labels_sorted_and_deterministic():
    assert bio_labels(["time", "date", "time"]) == ["O", "B-date", "I-date", "B-time", "I-time"]
    assert bio_labels([]) == ["O"]
    assert bio_labels({"b", "a"}) == bio_labels(["a", "b"])
    with pytest.raises(ValueError):
        bio_labels([""])


def test_spans_to_bio_basic():
    text = "wake me up at nine am on friday"
    offsets = whitespace_offsets(text)
    slots = [Slot("date", 25, 31), Slot("time", 14, 21)]  # unsorted on purpose
    tags, lost = spans_to_bio(offsets, slots)
    assert tags == ["O", "O", "O", "O", "B-time", "I-time", "O", "B-date"]
    assert lost == 0


def test_spans_to_bio_partial_token_overlap():
    # Thai-like: a slot starting and ending inside tokens still tags the overlapping tokens
    offsets = [(0, 5), (5, 10), (10, 15)]
    tags, lost = spans_to_bio(offsets, [Slot("x", 3, 7)])
    assert tags == ["B-x", "I-x", "O"]
    assert lost == 0


def test_spans_to_bio_lost_slots():
    offsets = [(0, 3), (4, 7)]
    slots = [
        Slot("a", 0, 3),
        Slot("gap", 3, 4),  # whitespace between tokens: overlaps no token
        Slot("beyond", 10, 12),  # after the last token
        Slot("dup", 0, 3),  # token already claimed by "a"
    ]
    tags, lost = spans_to_bio(offsets, slots)
    assert tags == ["B-a", "O"]
    assert lost == 3


def test_spans_to_bio_rejects_bad_offsets():
    with pytest.raises(ValueError):
        spans_to_bio([(3, 1)], [])


def test_bio_to_spans_strict_and_lenient():
    offsets = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)]
    assert bio_to_spans(offsets, ["B-a", "I-a", "O", "B-b", "B-b", "I-b"]) == [
        Slot("a", 0, 3), Slot("b", 6, 7), Slot("b", 8, 11)]
    # I-x after O starts a span; I-x after another type starts a new one
    assert bio_to_spans(offsets, ["I-a", "I-a", "I-b", "O", "I-a", "O"]) == [
        Slot("a", 0, 3), Slot("b", 4, 5), Slot("a", 8, 9)]
    # span ending at the last token
    assert bio_to_spans(offsets, ["O"] * 5 + ["B-z"]) == [Slot("z", 10, 11)]
    assert bio_to_spans([], []) == []


def test_bio_to_spans_errors():
    with pytest.raises(ValueError):
        bio_to_spans([(0, 1)], [])
    for bad in ["X", "B-", "S-a", "b-a", "Ba"]:
        with pytest.raises(ValueError):
            bio_to_spans([(0, 1)], [bad])


def test_round_trip_on_token_boundaries():
    rng = random.Random(0)
    words = ["add", "step", "to", "me", "to", "the", "50", "clásicos", "playlist", "ฉัน", "दोस्त"]
    for _ in range(200):
        tokens = [rng.choice(words) for _ in range(rng.randint(1, 12))]
        text = " ".join(tokens)
        offsets = whitespace_offsets(text)
        # random non-overlapping token-aligned slots
        slots, i = [], 0
        while i < len(tokens):
            if rng.random() < 0.4:
                j = min(len(tokens), i + rng.randint(1, 3))
                slots.append(Slot(rng.choice(["a", "b"]), offsets[i][0], offsets[j - 1][1]))
                i = j
            else:
                i += 1
        tags, lost = spans_to_bio(offsets, slots)
        assert lost == 0
        assert all(t in bio_labels(["a", "b"]) for t in tags)
        assert bio_to_spans(offsets, tags) == slots


def test_byte_to_char_offsets():
    text = "aé ฉัน😀"
    # bytes: a(1) é(2) space(1) ฉ(3) ั(3) น(3) 😀(4)
    assert len(text.encode("utf-8")) == 17
    assert byte_to_char_offsets(text, [(0, 1), (1, 3), (4, 13), (13, 17)]) == [(0, 1), (1, 2), (3, 6), (6, 7)]
    # offsets inside a multi-byte character are widened to cover it
    assert byte_to_char_offsets(text, [(1, 2), (2, 3), (14, 16)]) == [(1, 2), (1, 2), (6, 7)]
    # empty spans
    assert byte_to_char_offsets(text, [(0, 0), (17, 17), (2, 2)]) == [(0, 0), (7, 7), (2, 2)]
    assert byte_to_char_offsets("", []) == []
    for bad in [(-1, 1), (3, 2), (0, 18)]:
        with pytest.raises(ValueError):
            byte_to_char_offsets(text, [bad])


def test_byte_offsets_agree_with_char_offsets_for_whole_characters():
    text = "ตั้งแต่วันอังคาร กลุ่มเพื่อนร่วมงาน हाँ ok"
    char_spans = whitespace_offsets(text)
    byte_spans = [(len(text[:s].encode()), len(text[:e].encode())) for s, e in char_spans]
    assert byte_to_char_offsets(text, byte_spans) == char_spans


# --- constrained IOB2 Viterbi decoding -------------------------------------------------

SMALL_TAGS = ["O", "B-a", "I-a", "B-b", "I-b"]


def _valid(tags, seq):
    prev = None
    for t in seq:
        tag = tags[t]
        if tag.startswith("I-") and prev not in ("B-" + tag[2:], tag):
            return False
        prev = tag
    return True


def test_allowed_transitions_follow_iob2():
    allowed = bio_allowed_transitions(SMALL_TAGS)
    assert allowed.shape == (6, 5)
    # I-a only after B-a or I-a; never at the start
    assert [bool(allowed[p, 2]) for p in range(6)] == [False, True, True, False, False, False]
    assert [bool(allowed[p, 4]) for p in range(6)] == [False, False, False, True, True, False]
    # O and B- tags may follow anything
    assert allowed[:, [0, 1, 3]].all()
    with pytest.raises(ValueError, match="invalid BIO tag"):
        bio_allowed_transitions(["O", "X-a"])


def test_viterbi_matches_brute_force_over_valid_sequences():
    rng = np.random.default_rng(0)
    allowed = bio_allowed_transitions(SMALL_TAGS)
    for trial in range(200):
        n = int(rng.integers(1, 6))
        scores = rng.normal(size=(n, 5)) * 3
        path = viterbi_bio(scores, allowed)
        assert _valid(SMALL_TAGS, path)
        best = max((s for s in itertools.product(range(5), repeat=n) if _valid(SMALL_TAGS, s)),
                   key=lambda s: sum(scores[i, t] for i, t in enumerate(s)))
        assert np.isclose(sum(scores[i, t] for i, t in enumerate(path)),
                          sum(scores[i, t] for i, t in enumerate(best)))


def test_viterbi_repairs_ill_formed_argmax():
    allowed = bio_allowed_transitions(SMALL_TAGS)
    # argmax would be O I-a I-a: "I-a" may not follow "O", so the span must start with B-a
    scores = np.array([[5.0, 4.0, 0, 0, 0], [0, 0, 3.0, 0, 0], [0, 0, 3.0, 0, 0]])
    assert viterbi_bio(scores, allowed).tolist() == [1, 2, 2]
    # a valid argmax comes back unchanged; per-token constants do not matter
    scores = np.array([[0, 2.0, 0, 0, 0], [0, 0, 2.0, 0, 0], [1.0, 0, 0, 0, 0]])
    assert viterbi_bio(scores, allowed).tolist() == [1, 2, 0]
    assert viterbi_bio(scores + np.array([[7.0], [-3.0], [100.0]]), allowed).tolist() == [1, 2, 0]
    assert viterbi_bio(np.zeros((0, 5)), allowed).shape == (0,)


def test_viterbi_rejects_bad_shapes_and_impossible_inventories():
    allowed = bio_allowed_transitions(SMALL_TAGS)
    with pytest.raises(ValueError, match="disagree"):
        viterbi_bio(np.zeros((3, 4)), allowed)
    with pytest.raises(ValueError, match="disagree"):
        viterbi_bio(np.zeros((3,)), allowed)
    only_inside = bio_allowed_transitions(["I-a"])
    with pytest.raises(ValueError, match="no tag sequence"):
        viterbi_bio(np.zeros((2, 1)), only_inside)


def test_observed_transitions_restrict_decoding_but_keep_o_reachable():
    # training data: "B-a I-a" and "O B-b"; never "B-b" after "I-a", never "I-a I-a"
    seen = observed_transitions([[1, 2], [0, 3]], 5)
    assert seen.shape == (6, 5)
    assert {tuple(x) for x in np.argwhere(seen)} == {(5, 1), (1, 2), (5, 0), (0, 3)}
    allowed = bio_allowed_transitions(SMALL_TAGS, seen)
    assert not allowed[2, 2] and allowed[1, 2]         # I-a I-a unseen; B-a I-a seen
    assert allowed[:, 0].all()                          # O may follow anything
    assert not allowed[0, 4]                            # still IOB2: I-b never after O
    # argmax B-a I-a I-a is IOB2-valid but uses an unseen transition
    scores = np.array([[0, 5.0, 0, 0, 0], [0, 0, 5.0, 0, 0], [1.0, 0, 4.0, 0, 0]])
    assert viterbi_bio(scores, bio_allowed_transitions(SMALL_TAGS)).tolist() == [1, 2, 2]
    assert viterbi_bio(scores, allowed).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="outside"):
        observed_transitions([[5]], 5)
    with pytest.raises(ValueError, match="shape"):
        bio_allowed_transitions(SMALL_TAGS, seen[:5])


def test_transition_masks_round_trip_through_metadata_text():
    rng = np.random.default_rng(3)
    for k in (1, 5, 149):
        mask = rng.random((k + 1, k)) < 0.1
        text = pack_transitions(mask)
        assert isinstance(text, str)
        np.testing.assert_array_equal(unpack_transitions(text, k), mask)
    assert len(pack_transitions(np.zeros((150, 149), bool))) <= 3800
    with pytest.raises(ValueError, match="bytes"):
        unpack_transitions(pack_transitions(np.zeros((6, 5), bool)), 6)
    with pytest.raises(ValueError, match="base64"):
        unpack_transitions("not base64!", 5)


# ---- joint intent + slot decoding ----

JOINT_TAGS = ["O", "B-date", "I-date", "B-dish", "I-dish"]


def _joint_fixture():
    train = [Example("wake me at 7", "en", "alarm", (Slot("date", 11, 12),)),
             Example("cook pasta", "en", "recipe", (Slot("dish", 5, 10),)),
             Example("hello", "en", "greet", ())]
    intents = ["alarm", "greet", "recipe"]
    return intents, intent_slot_tags(train, intents, JOINT_TAGS)


def test_intent_slot_tags_from_training_examples():
    intents, it = _joint_fixture()
    assert it.shape == (3, 5) and it.dtype == bool
    assert it[:, 0].all()                                   # O for every intent
    assert it[0].tolist() == [True, True, True, False, False]   # alarm: date only
    assert it[1].tolist() == [True, False, False, False, False]  # greet: no slots
    assert it[2].tolist() == [True, False, False, True, True]    # recipe: dish only
    # an intent never seen in training allows only O
    assert intent_slot_tags([], ["x"], JOINT_TAGS).tolist() == [[True] + [False] * 4]


def test_joint_decode_without_intent_tags_is_argmax_plus_viterbi():
    rng = np.random.default_rng(0)
    allowed = bio_allowed_transitions(JOINT_TAGS)
    for _ in range(50):
        probs, scores = rng.dirichlet(np.ones(3)), rng.normal(size=(4, 5))
        k, ids = joint_decode(probs, scores, allowed, None)
        assert k == int(np.argmax(probs))
        assert ids.tolist() == viterbi_bio(scores, allowed).tolist()


def test_joint_decode_keeps_slots_consistent_with_the_intent():
    intents, it = _joint_fixture()
    allowed = bio_allowed_transitions(JOINT_TAGS)
    # token 2 looks most like a dish, but the intent is surely "alarm": the dish
    # tags are not allowed with it, so the next best alarm tag (B-date) wins
    probs = np.array([0.9, 0.05, 0.05])
    scores = np.log(np.array([[0.9, 0.025, 0.025, 0.025, 0.025],
                              [0.2, 0.3, 0.01, 0.48, 0.01]]))
    k, ids = joint_decode(probs, scores, allowed, it)
    assert intents[k] == "alarm" and ids.tolist() == [0, 1]
    # intent nearly tied, slots decisive: the slot evidence picks the intent
    probs = np.array([0.40, 0.20, 0.40])
    scores = np.log(np.array([[0.01, 0.01, 0.01, 0.96, 0.01],
                              [0.01, 0.01, 0.01, 0.01, 0.96]]))
    k, ids = joint_decode(probs, scores, allowed, it)
    assert intents[k] == "recipe" and ids.tolist() == [3, 4]
    # top_k=1: only the argmax intent is tried (ties go to the lower id: alarm),
    # and its tags are forced to O / date
    k, ids = joint_decode(probs, scores, allowed, it, top_k=1)
    assert intents[k] == "alarm" and set(ids.tolist()) <= {0, 1, 2}
    # no tokens: the argmax intent
    k, ids = joint_decode(np.array([0.1, 0.7, 0.2]), np.zeros((0, 5)), allowed, it)
    assert k == 1 and ids.size == 0
    # zero probabilities (an int8 softmax) do not produce NaN
    k, ids = joint_decode(np.array([0.0, 0.0, 1.0]), scores, allowed, it)
    assert intents[k] == "recipe"


def test_joint_decode_maximises_the_joint_score_by_brute_force():
    intents, it = _joint_fixture()
    allowed = bio_allowed_transitions(JOINT_TAGS)
    rng = np.random.default_rng(1)
    for _ in range(40):
        probs = rng.dirichlet(np.ones(3))
        scores = rng.normal(size=(3, 5)) * 3
        logp = scores - np.log(np.exp(scores).sum(-1, keepdims=True))
        best = -np.inf
        for k in range(3):
            for seq in itertools.product(range(5), repeat=3):
                ok = all(it[k, t] for t in seq) and allowed[-1, seq[0]] and all(
                    allowed[a, b] for a, b in zip(seq, seq[1:]))
                if ok:
                    best = max(best, np.log(probs[k]) + logp[np.arange(3), seq].sum())
        k, ids = joint_decode(probs, scores, allowed, it, top_k=3)
        got = np.log(probs[k]) + logp[np.arange(3), ids].sum()
        assert got == pytest.approx(best)


def test_joint_decode_rejects_bad_shapes():
    _, it = _joint_fixture()
    allowed = bio_allowed_transitions(JOINT_TAGS)
    with pytest.raises(ValueError, match="intent_tags"):
        joint_decode(np.ones(4) / 4, np.zeros((2, 5)), allowed, it)
    with pytest.raises(ValueError, match="top_k"):
        joint_decode(np.ones(3) / 3, np.zeros((2, 5)), allowed, it, top_k=0)


def test_bit_masks_round_trip_with_their_shape():
    rng = np.random.default_rng(5)
    for shape in ((1, 1), (3, 5), (117, 149)):
        mask = rng.random(shape) < 0.3
        np.testing.assert_array_equal(unpack_bits(pack_bits(mask), shape), mask)
    with pytest.raises(ValueError, match="intent tag mask has"):
        unpack_bits(pack_bits(np.ones((3, 5), bool)), (30, 5), "intent tag mask")


# Spanish MTOP style: the pronoun slot is the clitic at the end of the verb token
CLITIC_TRAIN = [
    ("Recuérdame llamar a mamá", [("PERSON_REMINDED", 8, 10), ("TODO", 11, 24)]),
    ("recuérdame comprar pan", [("PERSON_REMINDED", 8, 10), ("TODO", 11, 22)]),
    ("Recuérdame pagar", [("PERSON_REMINDED", 8, 10), ("TODO", 11, 16)]),
    # a rule seen once is not kept (min_count=2)
    ("Muéstrame mis recordatorios", [("PERSON_REMINDED", 7, 9)]),
    # (TODO, "llamar") starts inside the token once, at its start twice: no rule
    ("llamar a mamá", [("TODO", 0, 13)]),
    ("llamar a papá", [("TODO", 0, 13)]),
    ("xllamar", [("TODO", 1, 7)]),
    # an edge inside a compound: end 7 characters before the end of "videomensaje"
    ("enviar videomensaje", [("TYPE_CONTENT", 7, 12)]),
    ("un videomensaje", [("TYPE_CONTENT", 3, 8)]),
]


def _clitic_data():
    texts = [t for t, _ in CLITIC_TRAIN]
    slots = [[Slot(*s) for s in sl] for _, sl in CLITIC_TRAIN]
    return texts, [whitespace_offsets(t) for t in texts], slots


def test_span_trims_learn_the_majority_edge_inside_a_token():
    from ondevice_nlp.tagging import SpanTrims
    trims = SpanTrims.learn(*_clitic_data())
    assert trims.start == {("PERSON_REMINDED", "recuérdame"): 8}
    assert trims.end == {("TYPE_CONTENT", "videomensaje"): 7}
    assert len(trims) == 2
    # with min_count=1 the single Muéstrame example makes a rule too
    assert SpanTrims.learn(*_clitic_data(), min_count=1).start[("PERSON_REMINDED", "muéstrame")] == 7
    with pytest.raises(ValueError, match="2 texts"):
        SpanTrims.learn(["a", "b"], [[(0, 1)]], [[]])


def test_span_trims_recover_the_gold_slots_from_whole_token_tags():
    """Gold slots -> BIO on whole tokens -> spans -> trims gives the gold slots back,
    which whole-token spans alone cannot."""
    from ondevice_nlp.tagging import SpanTrims
    texts, offsets, slots = _clitic_data()
    trims = SpanTrims.learn(texts, offsets, slots)
    for i in (0, 1, 2, 7, 8):
        whole = bio_to_spans(offsets[i], spans_to_bio(offsets[i], slots[i])[0])
        assert whole != slots[i]
        assert trims.apply(texts[i], offsets[i], whole) == slots[i]
    # unseen text: the rule applies to the same lowercased token, not to others
    text = "RECUÉRDAME mañana"
    offs = whitespace_offsets(text)
    spans = [Slot("PERSON_REMINDED", 0, 10), Slot("DATE_TIME", 11, 17)]
    assert trims.apply(text, offs, spans) == [Slot("PERSON_REMINDED", 8, 10), Slot("DATE_TIME", 11, 17)]
    # a span of another type on the same token, or not on token edges, is left alone
    assert trims.apply(text, offs, [Slot("TODO", 0, 10)]) == [Slot("TODO", 0, 10)]
    assert trims.apply(text, offs, [Slot("PERSON_REMINDED", 1, 10)]) == [Slot("PERSON_REMINDED", 1, 10)]
    # rules that would leave a span empty keep it whole
    both = SpanTrims({("X", "ab"): 1}, {("X", "ab"): 1})
    assert both.apply("ab", [(0, 2)], [Slot("X", 0, 2)]) == [Slot("X", 0, 2)]


def test_span_trims_round_trip_through_metadata_json_and_reject_bad_tables():
    import json
    from ondevice_nlp.tagging import SpanTrims
    trims = SpanTrims.learn(*_clitic_data())
    types = ["PERSON_REMINDED", "TODO", "TYPE_CONTENT"]
    obj = json.loads(json.dumps(trims.to_json(), ensure_ascii=False))
    assert obj == {"start": [["PERSON_REMINDED", "recuérdame", 8]],
                   "end": [["TYPE_CONTENT", "videomensaje", 7]]}
    assert SpanTrims.from_json(obj, types) == trims
    bad = [  # (words the error must contain, table)
        ("keys 'start' and 'end'", []),
        ("keys 'start' and 'end'", {"start": []}),
        ("'end' is not a list", {"start": [], "end": "x"}),
        ("is not \\[slot type", {"start": [["TODO", "x"]], "end": []}),
        ("n >= 1", {"start": [["TODO", "x", 0]], "end": []}),
        ("n >= 1", {"start": [], "end": [["TODO", "x", 1.5]]}),
        ("token, n", {"start": [["TODO", "", 1]], "end": []}),
        ("unknown slot type 'NOPE'", {"start": [["NOPE", "x", 1]], "end": []}),
    ]
    for words, obj in bad:
        with pytest.raises(ValueError, match=words):
            SpanTrims.from_json(obj, types)
