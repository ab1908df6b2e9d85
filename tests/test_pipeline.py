"""End to end: a tiny `ondevice-nlp build` on fixture data, then evaluate/predict on its .tflite."""

import json
import os
import random

import numpy as np
import pytest

from ondevice_nlp import cli
from ondevice_nlp.pipeline import with_word_list
from ondevice_nlp.projection_ref import ProjectionConfig

CITIES = ["Paris", "Berlin", "New York", "São Paulo", "Zürich", "Tokyo", "Lima", "Oslo"]
TIMES = ["7 am", "noon", "six thirty", "tomorrow morning", "9 pm"]
NAMES = ["Angelika", "Bob", "Chen Li", "Dana", "Émile"]


def _line(utt, intent, slots, locale="en_XX"):
    flat = f"[IN:{intent} " + " ".join(f"[SL:{t} {v} ]" for t, v in slots) + " ]"
    return "\t".join([utt, flat, flat, "test", locale])


def write_mtop(root, splits, lang="en"):
    """Write a fixture MTOP folder: `root/<lang>/<split>.txt`, one flat-parse TSV line per item.

    `splits` maps a split name ("train", "eval", "test") to its lines (see `_line`). Returns `root`.
    """
    d = root / lang
    d.mkdir(parents=True, exist_ok=True)
    for split, lines in splits.items():
        (d / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _make_examples(rng, n):
    out = []
    for _ in range(n):
        k = rng.randrange(3)
        if k == 0:
            c = rng.choice(CITIES)
            out.append(_line(f"what is the weather in {c}", "GET_WEATHER", [("LOCATION", c)]))
        elif k == 1:
            t = rng.choice(TIMES)
            out.append(_line(f"set an alarm for {t}", "CREATE_ALARM", [("DATE_TIME", f"for {t}")]))
        else:
            p = rng.choice(NAMES)
            out.append(_line(f"send a message to {p}", "SEND_MESSAGE", [("RECIPIENT", p)]))
    return out


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    rng = random.Random(0)
    splits = {s: _make_examples(rng, n) for s, n in (("train", 240), ("eval", 30), ("test", 30))}
    # MTOP Spanish style: the slot "me" is the end of the token
    splits["train"] += [_line(f"Recuérdame llamar a {p}", "CREATE_REMINDER",
                              [("PERSON_REMINDED", "me"), ("TODO", f"llamar a {p}")]) for p in NAMES]
    root = write_mtop(tmp_path_factory.mktemp("mtop"), splits)
    out = tmp_path_factory.mktemp("out")
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--size", "tiny", "--out", str(out), "--epochs", "6", "--qat-epochs", "1",
                   "--batch-size", "16", "--lr", "1e-2", "--qat-lr", "1e-3", "--no-crf"])
    assert rc == 0
    return root, out


def test_build_writes_model_and_metrics(tiny_build):
    _, out = tiny_build
    m = json.loads((out / "metrics.json").read_text())
    assert m["model_size_bytes"] == os.path.getsize(out / "model.tflite")
    for kind in ("keras", "keras_qat", "tflite"):
        en = m[kind]["en"]
        assert en["n"] == 30
        for k in ("intent_accuracy", "slot_f1", "exact_match"):
            assert 0.0 <= en[k] <= 1.0
    # the task is trivially learnable: the float model must have learnt it
    assert m["keras"]["en"]["intent_accuracy"] >= 0.9
    assert m["keras"]["en"]["exact_match"] >= 0.6
    # the int8 file scores like the QAT Keras model it came from
    assert abs(m["tflite"]["en"]["exact_match"] - m["keras_qat"]["en"]["exact_match"]) <= 0.1
    assert (out / "report.md").read_text().count("| en |") == 1


def test_tflite_predictions_equal_keras(tiny_build):
    """The .tflite's intents and slot tags match the QAT Keras model it was exported from."""
    import tensorflow as tf  # noqa: F401  (loads the TF op library)
    import tf_keras as keras

    from ondevice_nlp import train as T
    from ondevice_nlp.configs import get_size
    from ondevice_nlp.data import load_dataset
    from ondevice_nlp.models.pnlp_mixer import build_pnlp_mixer
    from ondevice_nlp.tagging import viterbi_bio
    from ondevice_nlp.tflite_model import TFLiteModel

    root, out = tiny_build
    tfl = TFLiteModel(str(out / "model.tflite"))
    labels = T.Labels(tfl.intents, tfl.tags)
    size = get_size("tiny")
    proj = size.projection
    model = build_pnlp_mixer(size.net, max_tokens=proj.max_tokens,
                             feature_size=proj.feature_size, window=size.window,
                             num_intents=len(labels.intents), num_tags=len(labels.tags))
    qat = T.quantize_aware(model)
    qat.load_weights(str(out / "checkpoints" / "qat.weights.h5"))
    test = load_dataset("mtop", str(root), ["en"], "test")["en"]
    enc = T.encode(test, labels, proj.max_tokens)
    k_int, k_tags = T.keras_predict(qat, enc, proj)
    res = tfl.run([e.text for e in test])
    t_int = np.argmax(res["intent_probs"], -1)
    mask = enc.mask > 0
    assert (res["token_mask"] == enc.mask).all()
    assert np.mean(t_int == k_int) >= 0.95
    assert np.mean(res["slot_tags"][mask] == k_tags[mask]) >= 0.95
    # the dequantized slot logits are what the argmax tags were taken from ...
    assert res["slot_logits"].shape == (len(test), proj.max_tokens, len(labels.tags))
    assert (np.argmax(res["slot_logits"], -1) == res["slot_tags"]).all()
    # ... and the constrained decoding of the file matches the Keras model's
    # (the file's constraints: IOB2 and the tag transitions seen in training)
    assert "transitions" in tfl.meta["labels"]
    assert tfl.allowed.sum() < T.Labels(tfl.intents, tfl.tags).allowed_transitions().sum()
    _, k_vit = T.keras_predict(qat, enc, proj, allowed=tfl.allowed)
    same = [t == k for i, offs in enumerate(enc.offsets)
            for t, k in zip(viterbi_bio(res["slot_logits"][i][:len(offs)], tfl.allowed),
                            k_vit[i, :len(offs)])]
    assert np.mean(same) >= 0.95
    # ... and so does the joint intent + slot decoding, with the intent -> tags
    # table the file carries (the slot types each intent had in training)
    train = load_dataset("mtop", str(root), ["en"], "train")["en"]
    from ondevice_nlp.tagging import intent_slot_tags
    np.testing.assert_array_equal(tfl.intent_tags,
                                  intent_slot_tags(train, tfl.intents, tfl.tags))
    k_ji, k_jt = T.keras_predict(qat, enc, proj, allowed=tfl.allowed, intent_tags=tfl.intent_tags)
    decoded = tfl.decode_batch([e.text for e in test])
    assert np.mean([tfl.intents[int(i)] == d[0] for i, d in zip(k_ji, decoded)]) >= 0.95
    spans = T.decode_predictions(enc, labels, k_ji, k_jt)[1]
    assert np.mean([list(a) == list(d[2]) for a, d in zip(spans, decoded)]) >= 0.9
    keras.backend.clear_session()


def test_span_trims_travel_in_the_file_and_move_decoded_edges(tiny_build):
    """The file carries the slot edges inside tokens learned from its training set
    (``Recuérda|me``), and its decoder applies such rules to the decoded spans."""
    from ondevice_nlp import train as T
    from ondevice_nlp.data import Slot, load_dataset
    from ondevice_nlp.tagging import SpanTrims
    from ondevice_nlp.tflite_model import TFLiteModel

    root, out = tiny_build
    tfl = TFLiteModel(str(out / "model.tflite"))
    train = load_dataset("mtop", str(root), ["en"], "train")["en"]
    offs = [T.token_char_offsets(e.text, 16) for e in train]
    assert tfl.span_trims == SpanTrims.learn([e.text for e in train], offs, [e.slots for e in train])
    assert tfl.span_trims.start == {("PERSON_REMINDED", "recuérdame"): 8}
    # a rule for what the model predicts on a test text moves that span's edge
    texts = ["what is the weather in Paris", "send a message to Angelika"]
    tfl.span_trims = SpanTrims()
    before = [d[2] for d in tfl.decode_batch(texts)]
    first = before[0][0] if before[0] else before[1][0]
    text = texts[0] if before[0] else texts[1]
    token = text[first.start:].split(" ")[0]
    assert len(token) >= 2
    tfl.span_trims = SpanTrims({(first.type, token.lower()): 1}, {})
    after = [d[2] for d in tfl.decode_batch(texts)]
    assert Slot(first.type, first.start + 1, first.end) in after[texts.index(text)]


def test_everything_after_the_custom_op_is_int8(tiny_build):
    """Full-integer file: float32 only on the custom op's outputs (QUANTIZE), on the
    dequantized outputs (DEQUANTIZE) and on the slot-tag argmax of those."""
    from ondevice_nlp import ops

    _, out = tiny_build
    interp = ops.make_interpreter(str(out / "model.tflite"), op_resolver="reference")
    interp.allocate_tensors()
    tensors = interp.get_tensor_details()
    details = interp._get_ops_details()  # noqa: SLF001
    dtype = {d["index"]: d["dtype"] for d in tensors}
    float_ops = {op["op_name"] for op in details
                 if any(dtype[i] == np.float32 for i in [*op["inputs"], *op["outputs"]] if i >= 0)}
    assert float_ops <= {"OndeviceProjection", "QUANTIZE", "DEQUANTIZE", "ARG_MAX"}, float_ops
    assert {"FULLY_CONNECTED", "RSQRT", "MEAN", "GELU"} <= {op["op_name"] for op in details}
    # LayerNorm's variance + epsilon (the ADD before each RSQRT) keeps the QAT range of
    # the variance (the MEAN before it), not a narrower one calibrated by the converter
    made_by = {o: op for op in details for o in op["outputs"]}
    scale = {d["index"]: d["quantization"] for d in tensors}
    rsqrts = [op for op in details if op["op_name"] == "RSQRT"]
    assert rsqrts
    for op in rsqrts:
        add = made_by[op["inputs"][0]]
        assert add["op_name"] == "ADD"
        mean = [made_by[i] for i in add["inputs"] if i in made_by and made_by[i]["op_name"] == "MEAN"]
        assert len(mean) == 1
        assert scale[add["outputs"][0]] == scale[mean[0]["outputs"][0]]


def test_int8_layer_error_tool_compares_the_file_with_its_qat_model(tiny_build, capsys):
    """tools/int8_layer_error.py finds the QAT layers' outputs among the .tflite's tensors
    and reports small relative errors (the int8 file tracks its QAT model)."""
    from tools import int8_layer_error as tool

    root, out = tiny_build
    assert tool.main([str(out), "--data-dir", str(root), "--languages", "en", "--n", "10"]) == 0
    rows = [ln.split("|") for ln in capsys.readouterr().out.splitlines()
            if ln.startswith("| quant")]
    errors = {r[1].strip(): float(r[3]) for r in rows}
    assert {"quant_bottleneck", "quant_b0_token_ln", "quant_intent", "quant_slots"} <= set(errors)
    assert all(0.0 <= e < 0.25 for e in errors.values()), errors
    assert errors["quant_bottleneck"] < 0.05


def test_predict_cli_gives_char_offsets(tiny_build, capsys):
    _, out = tiny_build
    text = "what is the weather in São Paulo"
    assert cli.main(["predict", str(out / "model.tflite"), text]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"intent", "slots"}
    assert res["intent"] in {"GET_WEATHER", "CREATE_ALARM", "SEND_MESSAGE"}
    for s in res["slots"]:
        assert text[s["start"]:s["end"]] == s["text"]
        assert set(s) == {"type", "text", "start", "end"}


def test_evaluate_cli_matches_build_metrics(tiny_build, capsys):
    root, out = tiny_build
    assert cli.main(["evaluate", str(out / "model.tflite"), "--dataset", "mtop",
                     "--data-dir", str(root), "--split", "test"]) == 0
    res = json.loads(capsys.readouterr().out)
    m = json.loads((out / "metrics.json").read_text())
    assert res["en"] == m["tflite"]["en"]


def test_evaluate_cli_errors(tiny_build, capsys):
    """``evaluate --errors`` adds error_breakdown's counts, consistent with the scores."""
    from ondevice_nlp.data import load_dataset
    from ondevice_nlp.metrics import error_breakdown
    from ondevice_nlp.tflite_model import TFLiteModel

    root, out = tiny_build
    assert cli.main(["evaluate", str(out / "model.tflite"), "--dataset", "mtop",
                     "--data-dir", str(root), "--split", "test", "--errors"]) == 0
    res = json.loads(capsys.readouterr().out)["en"]
    m = json.loads((out / "metrics.json").read_text())
    errors = res.pop("errors")
    trunc = res.pop("truncation")
    assert res == m["tflite"]["en"]
    test = load_dataset("mtop", str(root), ["en"], "test")["en"]
    decoded = TFLiteModel(str(out / "model.tflite")).decode_batch([e.text for e in test])
    assert errors == error_breakdown(test, [d[0] for d in decoded], [d[2] for d in decoded])
    assert errors["n"] == res["n"] == len(test)
    assert errors["exact_match"] == round(res["exact_match"] * res["n"])
    assert errors["intent_wrong"] == round((1 - res["intent_accuracy"]) * res["n"])
    assert errors["gold_other_bounds"] == (errors["bounds_start"] + errors["bounds_end"]
                                           + errors["bounds_both"])
    from ondevice_nlp.export import truncation_counts
    S = TFLiteModel(str(out / "model.tflite")).meta["projection"]["max_tokens"]
    assert trunc == truncation_counts(test, [d[0] for d in decoded], [d[2] for d in decoded], S)


def test_read_projection_vector(tiny_build):
    """The custom op's config input read from the file is the vector the build trained with;
    a file without the op gives None; a config input of another type or a truncated file, a
    clear error naming the file."""
    import flatbuffers

    from ondevice_nlp.tflite_model import (PROJECTION_OP, ModelFileError, _schema,
                                           read_projection_vector)

    root, out = tiny_build
    buf = (out / "model.tflite").read_bytes()
    saved = json.loads((out / "checkpoints" / "projection.json").read_text())["vector"]
    got = read_projection_vector(buf)
    assert got.dtype == np.int32 and got.tolist() == saved
    schema = _schema()

    def mutate(fn):
        m = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
        fn(m, [i for i, c in enumerate(m.operatorCodes) if c.customCode == PROJECTION_OP.encode()])
        b = flatbuffers.Builder(len(buf) + 1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def rename(m, codes):
        for i in codes:
            m.operatorCodes[i].customCode = b"SomeOtherOp"

    def retype(m, codes):
        for g in m.subgraphs:
            for op in g.operators:
                if op.opcodeIndex in codes:
                    g.tensors[op.inputs[1]].type = schema.TensorType.FLOAT32

    assert read_projection_vector(mutate(lambda m, codes: None)).tolist() == saved
    assert read_projection_vector(mutate(rename)) is None
    with pytest.raises(ModelFileError, match="m.tflite: the OndeviceProjection op's config"):
        read_projection_vector(mutate(retype), "m.tflite")
    with pytest.raises(ModelFileError, match="m.tflite"):
        read_projection_vector(buf[:len(buf) // 2], "m.tflite")


def test_projection_config_checks_the_metadata(tiny_build, tmp_path):
    """TFLiteModel.projection_config is the op's config, checked against the metadata: a file
    whose two disagree is corrupt (the error names the fields), metadata written before a
    field existed counts it as its default, and a word count with no op to hold the words is
    an error too."""
    from ondevice_nlp.tflite_model import ModelFileError, TFLiteModel, add_metadata

    root, out = tiny_build
    tfl = TFLiteModel(str(out / "model.tflite"))
    saved = json.loads((out / "checkpoints" / "projection.json").read_text())["vector"]
    proj = tfl.projection_config()
    assert proj.to_vector().tolist() == saved and proj.summary() == tfl.meta["projection"]

    def with_meta(projection, name):
        meta = {k: v for k, v in tfl.meta.items() if k != "format"}
        path = tmp_path / name
        path.write_bytes(add_metadata(tfl.buf, {**meta, "projection": projection}))
        return TFLiteModel(str(path))

    older = {k: v for k, v in tfl.meta["projection"].items() if k not in ("shape", "ngram")}
    assert proj.shape == 0 and proj.ngram == 0  # so their defaults are right for this file
    assert with_meta(older, "old.tflite").projection_config() == proj
    other = {**tfl.meta["projection"], "max_tokens": proj.max_tokens + 1, "seed": 7}
    with pytest.raises(ModelFileError, match=(
            f"bad.tflite: the metadata and the projection op's config differ \\(max_tokens "
            f"{proj.max_tokens + 1} in the metadata, {proj.max_tokens} in the op; seed 7 in "
            f"the metadata, {proj.seed} in the op\\); the file is corrupt")):
        with_meta(other, "bad.tflite").projection_config()
    # the words of a --words file travel in the op only: a word count without words
    with pytest.raises(ModelFileError, match="w.tflite: .*words 3 in the metadata, 0 in the op"):
        with_meta({**tfl.meta["projection"], "words": 3, "word_len": 2},
                  "w.tflite").projection_config()


def test_truncation_counts_hand_computed():
    """Utterances longer than S tokens, those still exact, and gold slots past the S-th token
    (S = 3 here; a Thai letter with its marks is one token)."""
    from ondevice_nlp.data.example import Example, Slot
    from ondevice_nlp.export import truncation_counts

    def ex(text, intent, *slots, language="en"):
        return Example(text=text, language=language, intent=intent, slots=tuple(slots))

    gold = [ex("wake me at 7", "ALARM", Slot("TIME", 11, 12)),     # 4 tokens, slot past the cap
            ex("play jazz now", "MUSIC", Slot("GENRE", 5, 9)),     # 3 tokens: fits
            ex("call mom and dad", "CALL", Slot("NAME", 5, 8)),    # 4 tokens, slot inside
            ex("สวัสดี", "GREET", language="th")]                   # 4 letter tokens
    intents = ["ALARM", "MUSIC", "CALL", "GREET"]
    slots = [[], [("GENRE", 5, 9)], [("NAME", 5, 8)], []]
    assert truncation_counts(gold, intents, slots, 3) == {
        "max_tokens": 3, "too_long": 3, "too_long_exact_match": 2, "gold_slots_past_cap": 1}
    assert truncation_counts(gold, intents, slots, 4)["too_long"] == 0
    # with a word dictionary that holds it, "สวัสดี" is one token
    from ondevice_nlp.projection_ref import ProjectionConfig, word_dictionary
    h, word_len = word_dictionary(["สวัสดี"])
    words = ProjectionConfig(words=h, word_len=word_len)
    assert truncation_counts(gold, intents, slots, 3, words)["too_long"] == 2
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        truncation_counts(gold, intents, slots, 0)
    with pytest.raises(ValueError, match="length mismatch"):
        truncation_counts(gold, intents[:2], slots, 3)


@pytest.mark.parametrize("decoding", ["viterbi", "argmax"])
def test_evaluate_cli_decoding_ablations(tiny_build, capsys, decoding):
    """``evaluate --decoding viterbi|argmax`` scores what those simpler decoders give,
    recomputed here from the file's raw outputs."""
    from ondevice_nlp.data import load_dataset
    from ondevice_nlp.metrics import evaluate
    from ondevice_nlp.tagging import bio_to_spans, byte_to_char_offsets, viterbi_bio
    from ondevice_nlp.tflite_model import TFLiteModel

    root, out = tiny_build
    assert cli.main(["evaluate", str(out / "model.tflite"), "--dataset", "mtop", "--data-dir",
                     str(root), "--split", "test", "--decoding", decoding]) == 0
    res = json.loads(capsys.readouterr().out)["en"]
    test = load_dataset("mtop", str(root), ["en"], "test")["en"]
    tfl = TFLiteModel(str(out / "model.tflite"))
    raw = tfl.run([e.text for e in test])
    intents, slots = [], []
    for i, e in enumerate(test):
        n = int(raw["token_mask"][i].sum())
        offs = byte_to_char_offsets(e.text, [tuple(map(int, o)) for o in raw["token_offsets"][i][:n]],
                                    lambda ch: len(ch.encode("utf-8")))
        ids = (raw["slot_tags"][i][:n] if decoding == "argmax"
               else viterbi_bio(raw["slot_logits"][i][:n], tfl.allowed))
        intents.append(tfl.intents[int(np.argmax(raw["intent_probs"][i]))])
        slots.append(bio_to_spans(offs, [tfl.tags[int(k)] for k in ids]))
    assert res == evaluate(test, intents, slots)
    with pytest.raises(ValueError, match="decoding"):
        TFLiteModel(str(out / "model.tflite"), decoding="crf")


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x00" * 64])
def test_corrupt_model_gives_clear_error(tmp_path, capsys, content):
    p = tmp_path / "bad.tflite"
    p.write_bytes(content)
    assert cli.main(["predict", str(p), "hello"]) == 2
    err = capsys.readouterr().err
    assert "bad.tflite" in err and "error" in err


def test_truncated_model_gives_clear_error(tiny_build, tmp_path, capsys):
    _, out = tiny_build
    buf = (out / "model.tflite").read_bytes()
    for cut in (len(buf) // 2, 200, 40):
        p = tmp_path / f"cut{cut}.tflite"
        p.write_bytes(buf[:cut])
        assert cli.main(["predict", str(p), "hello"]) == 2
        assert p.name in capsys.readouterr().err


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(tmp_path / "nope"),
                   "--size", "tiny", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "nope" in capsys.readouterr().err


def test_resume_skips_completed_float_and_qat_phases(tiny_build, tmp_path):
    """--resume reuses the completed float and QAT phases (export and evaluation run again)
    and ends with the same Keras metrics; without the QAT phase's marker QAT runs again."""
    import shutil

    root, out = tiny_build
    again = tmp_path / "again"
    shutil.copytree(out, again)
    before = json.loads((again / "metrics.json").read_text())
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--size", "tiny", "--out", str(again), "--epochs", "6", "--qat-epochs", "1",
                   "--batch-size", "16", "--lr", "1e-2", "--qat-lr", "1e-3", "--resume",
                   "--no-crf"])
    assert rc == 0
    log = (again / "build.log").read_text()
    assert "resumed: float phase already complete" in log
    after = json.loads((again / "metrics.json").read_text())
    assert after["keras"]["en"] == before["keras"]["en"]
    assert after["eval_history"]["float"] == before["eval_history"]["float"]
    assert "resumed: QAT phase already complete" in log
    assert after["keras_qat"]["en"] == before["keras_qat"]["en"]
    assert after["eval_history"]["qat"] == before["eval_history"]["qat"]
    assert abs(after["tflite"]["en"]["exact_match"] - before["tflite"]["en"]["exact_match"]) <= 0.1
    (again / "checkpoints" / "qat.done.json").unlink()
    assert cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                     "--size", "tiny", "--out", str(again), "--epochs", "6", "--qat-epochs", "1",
                     "--batch-size", "16", "--lr", "1e-2", "--qat-lr", "1e-3", "--resume",
                     "--no-crf"]) == 0
    log = (again / "build.log").read_text()
    assert log.count("resumed: QAT phase already complete") == 1 and "[qat] epoch 1" in log
    assert (again / "checkpoints" / "qat.done.json").exists()


def test_resume_from_a_checkpoint_of_another_model_is_a_clear_error(tiny_build, tmp_path, capsys):
    """A float checkpoint that does not fit the model (here: a wider size's) stops --resume
    with a message naming the file and saying to run without --resume. (Its projection
    differs too: without the checkpoint's projection.json, as in runs written before it was
    kept, that goes unchecked, with a warning, and the weights tell.)"""
    import shutil

    root, out = tiny_build
    again = tmp_path / "other"
    shutil.copytree(out, again)
    (again / "checkpoints" / "projection.json").unlink()
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--size", "xsmall", "--out", str(again), "--epochs", "1", "--qat-epochs", "1",
                   "--resume", "--no-crf"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "float.weights.h5" in err and "without --resume" in err
    assert "--resume cannot check it" in (again / "build.log").read_text()


def test_resume_with_the_other_crf_setting_is_a_clear_error(tiny_build, tmp_path, capsys):
    """tiny_build ran with --no-crf; resuming it with the default (the slot CRF) stops with a
    message naming the phase's done file and the flag it was trained with."""
    import shutil

    root, out = tiny_build
    again = tmp_path / "other"
    shutil.copytree(out, again)
    done = json.loads((again / "checkpoints" / "float.done.json").read_text())
    assert done["crf"] is False
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--size", "tiny", "--out", str(again), "--epochs", "1", "--qat-epochs", "1",
                   "--resume"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "float.done.json" in err and "without the slot CRF" in err and "--no-crf" in err


def test_resume_with_another_projection_is_a_clear_error(tiny_build, tmp_path, capsys):
    """The checkpoint keeps the projection config it was trained with; resuming with another
    one (here: a word list the run did not have) stops with a message naming the file and
    what differs, and a run missing that file (written before it was kept) is checked
    against OUT/projection.json, which --words runs have."""
    import shutil

    root, out = tiny_build
    saved = json.loads((out / "checkpoints" / "projection.json").read_text())["vector"]
    assert saved == ProjectionConfig.from_vector(saved).to_vector().tolist()
    assert len(saved) < 11  # tiny_build has no word list
    again = tmp_path / "other"
    shutil.copytree(out, again)
    words = tmp_path / "words.txt"
    words.write_text("ส่ง\n", encoding="utf-8")
    args = ["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
            "--size", "tiny", "--out", str(again), "--epochs", "1", "--qat-epochs", "1",
            "--resume", "--no-crf"]
    assert cli.main([*args, "--words", str(words)]) == 2
    err = capsys.readouterr().err
    assert "checkpoints/projection.json" in err and "another projection" in err
    assert "words 0 in the checkpoint, 1 in this run" in err and "without --resume" in err
    # the file is left as the checkpoint's
    assert json.loads((again / "checkpoints" / "projection.json").read_text())["vector"] == saved

    # an older --words run: no checkpoints/projection.json, its OUT/projection.json is read
    (again / "checkpoints" / "projection.json").unlink()
    with_words = with_word_list(ProjectionConfig.from_vector(saved), str(words))
    (again / "projection.json").write_text(json.dumps({"vector": with_words.to_vector().tolist()}))
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"{again / 'projection.json'}: the checkpoint was trained with" in err
    assert "words 1 in the checkpoint, 0 in this run" in err


def test_qat_range_calibration_tracks_float_model():
    """tfmot's QAT ranges start at [-6, 6]; calibration must fit them to the data."""
    import tensorflow as tf

    from ondevice_nlp import train as T
    from ondevice_nlp.models.pnlp_mixer import MixerConfig, build_pnlp_mixer

    rng = np.random.default_rng(0)
    S, F = 8, 32
    model = build_pnlp_mixer(MixerConfig(16, 1, 16, 16, 0.0, 0.0), max_tokens=S, feature_size=F,
                             window=1, num_intents=4, num_tags=5)
    w = model.get_layer("bottleneck").get_weights()
    model.get_layer("bottleneck").set_weights([w[0] * 40.0, w[1]])  # activations well past 6
    x = {"features": rng.poisson(1.0, (64, S, F)).astype("float32"),
         "mask": np.ones((64, S), "float32")}
    ds = tf.data.Dataset.from_tensor_slices((x, (np.zeros(64), np.zeros((64, S))))).batch(16)
    ref, _ = model(x, training=False)
    q = T.quantize_aware(model)
    err_fresh = float(np.mean(np.abs(q(x, training=False)[0] - ref)))
    T.calibrate_quantization_ranges(q, ds.repeat(), steps=40)
    err_cal = float(np.mean(np.abs(q(x, training=False)[0] - ref)))
    assert err_cal < 0.5 * err_fresh, (err_fresh, err_cal)


def test_killed_build_resumes_from_last_epoch(tiny_build, tmp_path):
    """SIGKILL after float epoch 2, then --resume: no completed epoch is lost or redone."""
    import subprocess
    import sys

    root, out = tiny_build
    args = ["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
            "--size", "tiny", "--out", str(tmp_path / "run"), "--epochs", "6", "--qat-epochs", "1",
            "--batch-size", "16", "--lr", "1e-2", "--qat-lr", "1e-3", "--patience", "10"]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "ONDEVICE_NLP_KILL_AFTER": "float:2",
           "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "import sys; from ondevice_nlp.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == -9, p.stderr[-2000:]
    ck = tmp_path / "run" / "checkpoints"
    state = json.loads((ck / "float.weights.h5.state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    assert not (ck / "float.done.json").exists() and not (tmp_path / "run" / "model.tflite").exists()

    assert cli.main([*args, "--resume"]) == 0
    log = (tmp_path / "run" / "build.log").read_text()
    assert "[float] resumed after epoch 2" in log
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    hist = m["eval_history"]["float"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]  # epochs 3..6 ran once, after 2
    assert hist[:2] == state["history"]
    # same seed and settings as the uninterrupted tiny_build run (its patience 6 > 6 epochs)
    ref = json.loads((out / "metrics.json").read_text())
    assert len(ref["eval_history"]["float"]) == 6
    for kind in ("keras", "tflite"):
        for k in ("exact_match", "intent_accuracy", "slot_f1"):
            assert abs(m[kind]["en"][k] - ref[kind]["en"][k]) <= 0.1, (kind, k)
    assert (tmp_path / "run" / "model.tflite").exists()


def test_build_pqrnn_end_to_end(tiny_build, tmp_path):
    """`build --model pqrnn` trains, runs QAT, exports an int8 .tflite that agrees with Keras QAT."""
    from ondevice_nlp.tflite_model import TFLiteModel

    root, _ = tiny_build
    out = tmp_path / "pqrnn"
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--model", "pqrnn", "--size", "tiny", "--out", str(out), "--epochs", "6",
                   "--qat-epochs", "1", "--batch-size", "16", "--lr", "1e-2", "--qat-lr", "1e-3",
                   "--ema", "0.9"])  # and the weight average (test_ema_* below)
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "pqrnn" and m["size"] == "tiny" and m["ema"] == 0.9
    assert m["keras"]["en"]["intent_accuracy"] >= 0.9
    assert abs(m["tflite"]["en"]["exact_match"] - m["keras_qat"]["en"]["exact_match"]) <= 0.1
    tfl = TFLiteModel(str(out / "model.tflite"))
    assert tfl.meta["model"] == "pqrnn" and tfl.meta["projection"]["method"] == "ternary"
    assert tfl.predict("what is the weather in Oslo")["intent"] in tfl.intents


def test_unknown_model_or_size_is_a_clear_error(tiny_build, tmp_path, capsys):
    root, _ = tiny_build
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--model", "pqrnn", "--size", "huge", "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "unknown pqrnn size 'huge'" in capsys.readouterr().err


def test_log_file_gets_only_its_own_build(tmp_path):
    """Each build's log handler is removed when the build ends (several builds per process)."""
    import logging

    from ondevice_nlp.cli import _log_to

    log = logging.getLogger("ondevice_nlp.test")
    handlers = list(logging.getLogger().handlers)
    with _log_to(str(tmp_path / "a"), "build.log"):
        log.warning("inside a")
    with _log_to(str(tmp_path / "b"), "build.log"):
        log.warning("inside b")
    log.warning("after both")
    assert logging.getLogger().handlers == handlers
    a = (tmp_path / "a" / "build.log").read_text()
    b = (tmp_path / "b" / "build.log").read_text()
    assert "inside a" in a and "inside b" not in a and "after both" not in a
    assert "inside b" in b and "after both" not in b


def test_ema_epochs_score_the_moving_average_and_train_on(tmp_path):
    """compile_model(ema=m): each epoch's score sees the optimizer's moving average of the
    weights (checked against one kept by hand after every step), then training goes on from
    the raw weights, and the weights kept as best are the averaged ones."""
    import tensorflow as tf
    import tf_keras as keras

    from ondevice_nlp import train as T

    class Probe(T.EvalExactMatch):  # no eval data: the score is the epoch's number
        def __init__(self):
            super().__init__({}, None, None, patience=9, ckpt_path=None, tag="float")
            self.seen = []

        def _score_epoch(self, epoch, logs):
            self.seen.append([v.numpy().copy() for v in self.model.trainable_variables])
            self.best, self.best_weights = epoch, self.model.get_weights()

    m = 0.8
    avg, probe_avgs, raw_end, raw_begin = [], [], [], []

    class ByHand(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            avg[:] = [v.numpy().astype(np.float64) for v in self.model.trainable_variables]

        def on_train_batch_end(self, batch, logs=None):
            for i, v in enumerate(self.model.trainable_variables):
                avg[i] = m * avg[i] + (1 - m) * v.numpy()

        def on_epoch_end(self, epoch, logs=None):  # runs after Probe's swap and restore
            raw_end.append([v.numpy().copy() for v in self.model.trainable_variables])
            probe_avgs.append([a.copy() for a in avg])

        def on_epoch_begin(self, epoch, logs=None):
            raw_begin.append([v.numpy().copy() for v in self.model.trainable_variables])

    tf.random.set_seed(0)
    inp = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    model = keras.Model(inp, [keras.layers.Dense(3)(h), keras.layers.Dense(2)(h)])
    T.compile_model(model, 1e-2, 30, warmup_steps=0, ema=m)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype("float32")
    y1, y2 = rng.integers(0, 3, 60), rng.integers(0, 2, 60)
    probe = Probe()
    model.fit(x, [y1, y2], batch_size=20, epochs=3, callbacks=[probe, ByHand()], verbose=0)
    assert len(probe.seen) == 3
    for seen, by_hand, raw in zip(probe.seen, probe_avgs, raw_end):
        for s_, a, r in zip(seen, by_hand, raw):
            np.testing.assert_allclose(s_, a, rtol=1e-4, atol=1e-5)  # the average was scored
        assert max(np.abs(s_ - r).max() for s_, r in zip(seen, raw)) > 1e-4  # not the raw ones
    for end, begin in zip(raw_end[:-1], raw_begin[1:]):  # training went on from the raw weights
        for e, b in zip(end, begin):
            np.testing.assert_array_equal(e, b)
    kept = probe.best_weights  # the last epoch's average, restored at the end of training
    for w, s_ in zip(model.get_weights(), kept):
        np.testing.assert_allclose(w, s_)
    for w, s_ in zip(model.trainable_variables, probe.seen[-1]):
        np.testing.assert_allclose(w.numpy(), s_)


def test_ema_out_of_range_is_a_clear_error(tmp_path, capsys):
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(tmp_path), "--languages", "en",
                   "--size", "tiny", "--out", str(tmp_path / "o"), "--ema", "1.0"])
    assert rc == 2
    assert "--ema must be in [0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize("model,value,message", [
    ("pqrnn", "0.1", "--token-dropout is a pnlp_mixer setting"),
    ("pnlp_mixer", "1.0", "--token-dropout must be in [0, 1)")])
def test_token_dropout_misuse_is_a_clear_error(tmp_path, capsys, model, value, message):
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(tmp_path), "--languages", "en",
                   "--model", model, "--size", "tiny", "--out", str(tmp_path / "o"),
                   "--token-dropout", value])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_build_with_token_dropout(tiny_build, tmp_path):
    """--token-dropout trains, runs QAT and exports (the word dropout layer lives in the float
    phase's model only: built into the static model too, the QAT model gave infinite slot
    logits here and decoding failed)."""
    root, _ = tiny_build
    out = tmp_path / "td"
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--size", "tiny", "--out", str(out), "--epochs", "4", "--qat-epochs", "1",
                   "--batch-size", "16", "--lr", "1e-2", "--qat-lr", "1e-3", "--no-crf",
                   "--token-dropout", "0.2"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["token_dropout"] == 0.2
    assert m["keras"]["en"]["intent_accuracy"] >= 0.9  # trivially learnable, as above
    assert abs(m["tflite"]["en"]["exact_match"] - m["keras_qat"]["en"]["exact_match"]) <= 0.1


THAI_NAMES = ["สมชาย", "สมหญิง", "มานี", "ปิติ"]
THAI_TIMES = ["เจ็ดโมง", "แปดโมง", "เก้าโมง"]
THAI_WORDS = ["ส่ง", "ข้อความ", "หา", "ตั้ง", "นาฬิกา", "ปลุก", "ตอน", "เจ็ด", "แปด", "เก้า", "โมง",
              *THAI_NAMES]


def _thai_examples(rng, n):
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            p = rng.choice(THAI_NAMES)
            out.append(_line(f"ส่งข้อความหา{p}", "SEND_MESSAGE", [("RECIPIENT", p)], "th_XX"))
        else:
            t = rng.choice(THAI_TIMES)
            out.append(_line(f"ตั้งนาฬิกาปลุกตอน{t}", "CREATE_ALARM", [("DATE_TIME", f"ตอน {t}")],
                             "th_XX"))
    return out


def test_build_with_a_word_list(tmp_path, capsys):
    """`build --words`: the file's op reads Thai word by word (config version 4), the words
    travel in the model, and Keras, the QAT model and the `.tflite` agree."""
    from ondevice_nlp import projection_ref as ref
    from ondevice_nlp.tflite_model import TFLiteModel

    rng = random.Random(1)
    splits = {s: _thai_examples(rng, n) for s, n in (("train", 200), ("eval", 20), ("test", 20))}
    root = write_mtop(tmp_path / "mtop", splits, lang="th")
    words = tmp_path / "words.txt"
    words.write_text("\n".join(THAI_WORDS) + "\n\n", encoding="utf-8")
    out = tmp_path / "out"
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "th",
                   "--model", "pqrnn", "--size", "tiny", "--out", str(out), "--epochs", "6",
                   "--qat-epochs", "1", "--batch-size", "16", "--lr", "1e-2", "--qat-lr", "1e-3",
                   "--words", str(words)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["keras"]["th"]["intent_accuracy"] >= 0.9
    assert abs(m["tflite"]["th"]["exact_match"] - m["keras_qat"]["th"]["exact_match"]) <= 0.1
    tfl = TFLiteModel(str(out / "model.tflite"))
    h, word_len = ref.word_dictionary(THAI_WORDS)
    assert tfl.meta["projection"]["words"] == len(h) and tfl.meta["projection"]["word_len"] == word_len
    text = "ส่งข้อความหามานี"
    raw = tfl.run([text])
    n = int(raw["token_mask"][0].sum())
    data = text.encode()
    assert [data[s:e].decode() for s, e in raw["token_offsets"][0][:n]] == ["ส่ง", "ข้อความ", "หา", "มานี"]
    # without the list the same text is 13 letter tokens
    assert len(ref.tokenize(data, 64)) == 13
    # the file's config vector holds the words: `evaluate --errors` counts truncation in words
    from ondevice_nlp.export import truncation_counts
    from ondevice_nlp.tflite_model import read_projection_vector
    vec = read_projection_vector(tfl.buf)
    assert vec.tolist() == json.loads((out / "checkpoints" / "projection.json").read_text())["vector"]
    assert tfl.projection_config() == ref.ProjectionConfig.from_vector(vec)
    assert len(tfl.projection_config().words) == len(h)
    assert not (out / "projection.json").exists()  # the .tflite holds it: no copy beside it
    capsys.readouterr()  # the build's output
    assert cli.main(["evaluate", str(out / "model.tflite"), "--dataset", "mtop", "--data-dir",
                     str(root), "--split", "test", "--errors"]) == 0
    trunc = json.loads(capsys.readouterr().out)["th"]["truncation"]
    from ondevice_nlp.data import load_dataset
    test = load_dataset("mtop", str(root), ["th"], "test")["th"]
    decoded = tfl.decode_batch([e.text for e in test])
    intents, spans = [d[0] for d in decoded], [d[2] for d in decoded]
    proj = ref.ProjectionConfig.from_vector(vec)
    assert trunc == truncation_counts(test, intents, spans, 16, proj)
    assert trunc["too_long"] == 0 < truncation_counts(test, intents, spans, 16)["too_long"]
    # metadata and config vector that disagree on the word list: a clear error, not a guess
    from ondevice_nlp.export import evaluate_tflite
    from ondevice_nlp.tflite_model import ModelFileError, add_metadata
    meta = {k: v for k, v in tfl.meta.items() if k != "format"}
    meta["projection"] = {**meta["projection"], "words": len(h) + 1}
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(add_metadata(tfl.buf, meta))
    with pytest.raises(ModelFileError, match=f"bad.tflite: the metadata and the projection op's "
                                             f"config differ \\(words {len(h) + 1} in the "
                                             f"metadata, {len(h)} in the op\\)"):
        evaluate_tflite(TFLiteModel(str(bad)), test, errors=True)
    # an ensemble teacher of it reads its word list from the member's .tflite and cuts the
    # training set into the same words: its soft targets fit a student built with --words
    teacher = ["teacher", "--dataset", "mtop", "--data-dir", str(root), "--languages", "th",
               "--teacher-model", "ensemble", "--members", str(out)]
    assert cli.main([*teacher, "--out", str(tmp_path / "t")]) == 0
    tj = json.loads((tmp_path / "t" / "teacher.json").read_text())
    assert tj["max_tokens"] == 16
    student = ["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "th",
               "--model", "pqrnn", "--size", "tiny", "--epochs", "1", "--qat-epochs", "1",
               "--batch-size", "16", "--teacher", str(tmp_path / "t")]
    assert cli.main([*student, "--out", str(tmp_path / "s"), "--words", str(words)]) == 0
    # without the list the student's tokens are letters: the targets do not fit
    assert cli.main([*student, "--out", str(tmp_path / "s2")]) != 0
    assert "examples' token counts" in capsys.readouterr().err
    # a member whose metadata and projection op disagree on the word list: a clear error
    (out / "model.tflite").write_bytes(bad.read_bytes())
    assert cli.main([*teacher, "--out", str(tmp_path / "t2")]) != 0
    assert "model.tflite: the metadata and the projection op's config differ (words" \
        in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (b"\xe0\xb8\n", "words.txt:1: invalid UTF-8"),
    ("ส่ง\nhello\n".encode(), "words.txt:2: 'hello' is not one run"),
    ("ส่ง\nก ข\n".encode(), "words.txt:2"),
    (b"\n  \n", "words.txt: no words"),
])
def test_word_list_errors_name_file_and_line(tiny_build, tmp_path, capsys, content, message):
    root, _ = tiny_build
    words = tmp_path / "words.txt"
    words.write_bytes(content)
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--size", "tiny", "--out", str(tmp_path / "o"), "--words", str(words)])
    assert rc != 0
    assert message in capsys.readouterr().err


def test_word_list_with_letter_ngrams_is_a_clear_error(tiny_build, tmp_path, capsys):
    root, _ = tiny_build
    words = tmp_path / "words.txt"
    words.write_text("ส่ง\n", encoding="utf-8")
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--size", "base-ng4", "--out", str(tmp_path / "o"), "--words", str(words)])
    assert rc != 0
    assert "ngram must be 0 with a word dictionary" in capsys.readouterr().err


def test_trained_teacher_with_a_word_list(tmp_path, capsys):
    """`teacher --teacher-model pqrnn --words`: the teacher reads the word list's tokens, so its
    soft targets have one tag distribution per word and fit a student built with the same list,
    not one reading letters; with an ensemble, whose members carry their lists, --words is an
    error (the keras-hub teacher's words: test_distill)."""
    import numpy as np

    from ondevice_nlp import projection_ref as ref

    root, words, data = _thai_teacher_data(tmp_path)
    teacher = ["teacher", *data, "--teacher-model", "pqrnn", "--size", "tiny", "--epochs", "1",
               "--batch-size", "16", "--out", str(tmp_path / "t")]
    assert cli.main([*teacher, "--words", str(words)]) == 0
    tj = json.loads((tmp_path / "t" / "teacher.json").read_text())
    assert tj["projection"]["words"] == len(ref.word_dictionary(THAI_WORDS)[0])
    _assert_per_word_targets(tmp_path / "t", root)
    student = ["build", *data, "--model", "pqrnn", "--size", "tiny", "--epochs", "1",
               "--qat-epochs", "1", "--batch-size", "16", "--teacher", str(tmp_path / "t")]
    assert cli.main([*student, "--out", str(tmp_path / "s"), "--words", str(words)]) == 0
    assert "distillation" in json.loads((tmp_path / "s" / "metrics.json").read_text())
    capsys.readouterr()
    assert cli.main([*student, "--out", str(tmp_path / "s2")]) != 0  # letters: do not fit
    assert "examples' token counts" in capsys.readouterr().err
    assert cli.main(["teacher", *data, "--teacher-model", "ensemble", "--members", str(tmp_path / "s"),
                     "--words", str(words), "--out", str(tmp_path / "t2")]) == 2
    assert "--words does not go with --teacher-model ensemble" in capsys.readouterr().err


def _thai_teacher_data(tmp_path):
    """The Thai fixture (120 training utterances), its word list, and the data flags."""
    rng = random.Random(2)
    splits = {s: _thai_examples(rng, n) for s, n in (("train", 120), ("eval", 12), ("test", 12))}
    root = write_mtop(tmp_path / "mtop", splits, lang="th")
    words = tmp_path / "words.txt"
    words.write_text("\n".join(THAI_WORDS) + "\n", encoding="utf-8")
    return root, words, ["--dataset", "mtop", "--data-dir", str(root), "--languages", "th"]


def _assert_per_word_targets(folder, root):
    """A teacher folder's soft targets have one tag row per word of THAI_WORDS (fewer than
    letters) for each training utterance."""
    from ondevice_nlp import projection_ref as ref
    from ondevice_nlp.data import load_dataset

    S = json.loads((folder / "teacher.json").read_text())["max_tokens"]
    lengths = np.load(folder / "soft_targets.npz")["slot_lengths"]
    train = load_dataset("mtop", str(root), ["th"], "train")["th"]
    h, word_len = ref.word_dictionary(THAI_WORDS)
    assert lengths.tolist() == [len(ref.tokenize(e.text.encode(), S, frozenset(h), word_len))
                                for e in train]
    assert lengths.sum() < sum(len(ref.tokenize(e.text.encode(), S)) for e in train)


def test_hub_teacher_with_a_word_list(tmp_path):
    """`teacher --teacher-model hub --words`: the keras-hub teacher's slot rows follow the
    dictionary's words too (a tiny random BERT whose WordPiece vocabulary has the words)."""
    keras_hub = pytest.importorskip("keras_hub")
    pytest.importorskip("tokenizers")
    root, words, data = _thai_teacher_data(tmp_path)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *THAI_WORDS, *(f"##{w}" for w in THAI_WORDS)]
    preset = tmp_path / "tiny_bert"
    keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2,
                                  hidden_dim=16, intermediate_dim=32,
                                  max_sequence_length=32).save_to_preset(str(preset))
    (preset / "assets" / "tokenizer").mkdir(parents=True, exist_ok=True)
    (preset / "assets" / "tokenizer" / "vocabulary.txt").write_text("\n".join(vocab) + "\n",
                                                                   encoding="utf-8")
    assert cli.main(["teacher", *data, "--teacher-model", "hub", "--preset", str(preset),
                     "--epochs", "1", "--batch-size", "16", "--words", str(words),
                     "--out", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "teacher.json").read_text())["words"] == len(THAI_WORDS)
    _assert_per_word_targets(tmp_path / "t", root)
