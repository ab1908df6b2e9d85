"""Hostile model files and callers (issue 5): corrupt, truncated, foreign and wrong
``.tflite`` files given to ``ondevice-nlp predict/evaluate`` and ``TFLiteModel`` (run in
subprocesses, so a segfault shows as a negative return code), a model whose custom op
is missing from the resolver, hostile texts through ``TFLiteModel``, and 8 threads
calling one ``TFLiteModel`` at once.

The model under test is a tiny untrained pNLP-Mixer exported by ``export.export`` (the
real int8 conversion path, about 5 s): its predictions are arbitrary but depend on the
input, which is all these tests need.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import hostile_text  # noqa: E402

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from ondevice_nlp import ops  # noqa: E402
from ondevice_nlp.tflite_model import ModelFileError, TFLiteModel, add_metadata  # noqa: E402

INTENTS = ["CREATE_ALARM", "GET_WEATHER", "SEND_MESSAGE", "PLAY_MUSIC"]
TEXTS = ["set an alarm for 7 am", "what is the weather in Paris", "send a message to Bob",
         "play some jazz", "สวัสดีครับ", "नमस्ते दुनिया", "مرحبا بالعالم", "😀👍🏽", "", "x" * 500]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
           PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def _replace_once(buf: bytes, old: bytes, new: bytes) -> bytes:
    assert buf.count(old) == 1
    return buf.replace(old, new)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{name: path} of a good tiny model and of wrong / foreign model files."""
    import tensorflow as tf
    import tf_keras as keras
    import thread_stress

    from ondevice_nlp import tagging
    from ondevice_nlp.export import export

    d = tmp_path_factory.mktemp("models")
    model, proj, meta = thread_stress.tiny_model(INTENTS, ["DATE_TIME", "LOCATION", "PERSON"])
    tags = meta["labels"]["tags"]

    def _meta(tags, **extra):
        return {**meta, "labels": {"intents": INTENTS, "tags": tags}, **extra}

    good = d / "good.tflite"
    export(model, proj, [t.encode() for t in TEXTS], _meta(tags), str(good))
    buf = good.read_bytes()
    paths = {"good": good}

    # A valid .tflite that is not ours: a small Keras model converted with tf.lite.
    k = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(3)])
    foreign = tf.lite.TFLiteConverter.from_keras_model(k).convert()
    # a fixed batch above 1 is refused up front (the int8 calibrator would fail on it)
    with pytest.raises(ValueError, match="batch_size must be None"):
        export(model, proj, [t.encode() for t in TEXTS], _meta(tags), str(d / "b3.tflite"),
               batch_size=3)
    assert not (d / "b3.tflite").exists()
    files = {
        "keras_no_metadata": foreign,
        # ... and the same with our metadata glued on: wrong signature
        "keras_with_our_metadata": add_metadata(foreign, _meta(tags)),
        # our model, custom op renamed: the resolver has no kernel for it
        "renamed_custom_op": buf.replace(b"OndeviceProjection", b"OndeviceProjectioX"),
        # our model, metadata without labels / with fewer intents than outputs
        "metadata_without_labels": add_metadata(buf, {"model": "pnlp_mixer"}),
        "metadata_wrong_intents": add_metadata(buf, _meta(tags, labels={"intents": INTENTS[:2],
                                                                         "tags": tags})),
        # our model, its intent -> tags table of the wrong size (packed for 2 intents)
        "metadata_bad_intent_tags": add_metadata(buf, _meta(tags, labels={
            "intents": INTENTS, "tags": tags,
            "intent_tags": tagging.pack_bits(np.ones((2, len(tags)), bool))})),
        # our model, a span trim rule for a slot type the labels do not have
        "metadata_bad_span_trims": add_metadata(buf, _meta(tags, labels={
            "intents": INTENTS, "tags": tags,
            "span_trims": {"start": [["NO_SUCH_TYPE", "token", 1]], "end": []}})),
        # our model, its constant projection config corrupted (F = 0): the kernel refuses it
        "corrupt_projection_config": _replace_once(buf, proj.to_vector().tobytes(),
                                                   np.array([1, 0, 0, 16, 0, 16, 0], np.int32).tobytes()),
        "zero_length": b"",
        "random_bytes": random.Random(5).randbytes(4096),
        "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
        "truncated_half": buf[:len(buf) // 2],
        "truncated_header": buf[:12],
        "tfl3_bad_root": b"\xff\xff\xff\x7fTFL3" + bytes(100),
    }
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("model.tflite", buf)
    files["zip_of_model"] = zbuf.getvalue()
    for name, content in files.items():
        (d / f"{name}.tflite").write_bytes(content)
        paths[name] = d / f"{name}.tflite"
    paths["directory"] = d
    paths["missing"] = d / "no_such_model.tflite"
    data = d / "mtop" / "en"
    data.mkdir(parents=True)
    flat = "[IN:CREATE_ALARM [SL:DATE_TIME for 7 am ] ]"
    (data / "test.txt").write_text(
        "\n".join(["\t".join(["set an alarm for 7 am", flat, flat, "alarm", "en_XX"])] * 3) + "\n",
        encoding="utf-8")
    paths["data_dir"] = d / "mtop"
    return paths


BAD_MODELS = ["keras_no_metadata", "keras_with_our_metadata", "renamed_custom_op",
              "corrupt_projection_config",
              "metadata_without_labels", "metadata_wrong_intents", "metadata_bad_intent_tags",
              "metadata_bad_span_trims", "zero_length", "random_bytes",
              "png", "truncated_half", "truncated_header", "tfl3_bad_root", "zip_of_model",
              "directory", "missing"]
EXPECTED_WORDS = {  # what the one-line message must say (besides the file name)
    "keras_no_metadata": "no 'ondevice_nlp' metadata",
    "keras_with_our_metadata": "signature",
    "renamed_custom_op": "OndeviceProjectioX",
    "corrupt_projection_config": "OndeviceProjection: feature_size",
    "metadata_without_labels": "labels.intents",
    "metadata_wrong_intents": "2 intents",
    "metadata_bad_intent_tags": "labels.intent_tags",
    "metadata_bad_span_trims": "labels.span_trims",
    "zero_length": "not a TFLite model",
    "random_bytes": "not a TFLite model",
    "png": "not a TFLite model",
    "zip_of_model": "not a TFLite model",
    "tfl3_bad_root": "root table offset",
}


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ondevice_nlp.cli", *args], capture_output=True,
                          timeout=timeout, env=ENV)


def _error_line(proc: subprocess.CompletedProcess, command: str) -> str:
    """The stderr lines of the CLI that are not log lines (TFLite's, absl's, ours) must be one
    error line."""
    lines = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines()
             if ln.strip() and not ln.startswith(("INFO: ", "WARNING: ", "W0000", "I0000"))
             and not re.match(r"\d\d:\d\d:\d\d (INFO|WARNING) ", ln)]  # our progress log
    assert len(lines) == 1, proc.stderr.decode("utf-8", "replace")[-3000:]
    assert lines[0].startswith(f"ondevice-nlp {command}: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("name", BAD_MODELS)
def test_cli_predict_rejects_bad_model_files(models, name):
    path = models[name]
    proc = _cli("predict", str(path), "set an alarm")
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])  # < 0 would be a signal
    line = _error_line(proc, "predict")
    assert path.name in line
    assert EXPECTED_WORDS.get(name, path.name) in line, line


@pytest.mark.parametrize("name", ["keras_no_metadata", "renamed_custom_op", "zero_length", "png",
                                  "truncated_half", "metadata_wrong_intents"])
def test_cli_evaluate_rejects_bad_model_files(models, name):
    proc = _cli("evaluate", str(models[name]), "--dataset", "mtop", "--data-dir",
                str(models["data_dir"]), "--split", "test", "--languages", "en")
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    line = _error_line(proc, "evaluate")
    assert models[name].name in line and EXPECTED_WORDS.get(name, "") in line, line


def test_cli_good_model_and_invalid_utf8_text(models, capsys):
    """The same CLI paths work on the good model (evaluate in process: it imports
    TensorFlow), predict even with invalid UTF-8 in argv."""
    from ondevice_nlp import cli

    assert cli.main(["evaluate", str(models["good"]), "--dataset", "mtop", "--data-dir",
                     str(models["data_dir"]), "--split", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["en"]["n"] == 3
    text = b"caf\xc3\xa9 \xff\xfe \x01 \xe2\x80\x8d done"  # argv cannot hold NUL
    proc = subprocess.run([sys.executable, "-m", "ondevice_nlp.cli", "predict",
                           str(models["good"]), text], capture_output=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res["intent"] in INTENTS
    argv_text = os.fsdecode(text)
    for s in res["slots"]:
        assert argv_text[s["start"]:s["end"]] == s["text"]


def test_reference_kernels(models, capsys):
    """TFLiteModel and the CLI run the model with TFLite's reference kernels too."""
    from ondevice_nlp import cli

    m = TFLiteModel(str(models["good"]), op_resolver="reference")
    for r in m.predict_batch(["set an alarm for 7 am", "\xff\x00"]):
        assert r["intent"] in m.intents and isinstance(r["slots"], list)
    with pytest.raises(ValueError, match="op_resolver must be one of"):
        TFLiteModel(str(models["good"]), op_resolver="ref")
    assert cli.main(["predict", str(models["good"]), "wake me up at 7", "--op-resolver",
                     "reference"]) == 0
    assert json.loads(capsys.readouterr().out)["intent"] in INTENTS


MUTANT_DRIVER = r"""
import json, random, sys
from ondevice_nlp.tflite_model import ModelFileError, TFLiteModel
good = open(sys.argv[1], "rb").read()
rng = random.Random(int(sys.argv[3]))
cases = [("cut%d" % n, good[:n]) for n in sorted({int(len(good) * k / 40) for k in range(40)})]
for i in range(int(sys.argv[4])):
    b = bytearray(good)
    for _ in range(rng.randint(1, 8)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    cases.append(("flip%d" % i, bytes(b)))
counts = {"loaded_and_ran": 0, "rejected": 0}
for name, content in cases:
    print("case", name, flush=True)  # the last one printed is the culprit of a crash
    path = sys.argv[2]
    open(path, "wb").write(content)
    try:
        m = TFLiteModel(path)
        for r in m.predict_batch(["set an alarm for 7 am", "\xff\x00", "x" * 300]):
            assert r["intent"] in m.intents and isinstance(r["slots"], list)
        counts["loaded_and_ran"] += 1
    except (ModelFileError, FileNotFoundError) as e:
        assert path in str(e), e
        counts["rejected"] += 1
print(json.dumps(counts))
"""


def test_truncated_and_mutated_models_never_crash(models, tmp_path):
    """40 truncations and 400 random byte overwrites of a good model: each either loads and
    predicts, or is rejected with ModelFileError naming the file. In a subprocess: a
    segfault in the runtime would fail the test with the case that caused it."""
    proc = subprocess.run([sys.executable, "-c", MUTANT_DRIVER, str(models["good"]),
                           str(tmp_path / "mutant.tflite"), "11", "400"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    last_case = [ln for ln in proc.stdout.splitlines() if ln.startswith("case ")][-1:]
    assert proc.returncode == 0, (proc.returncode, last_case, proc.stderr[-3000:])
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    print(counts)
    assert counts["loaded_and_ran"] + counts["rejected"] == 440
    assert counts["rejected"] >= 39  # every truncation, at least
    assert counts["loaded_and_ran"] > 0  # overwritten weights still run


def test_missing_custom_op_error_says_how_to_load(models):
    """A plain interpreter (no registerer) fails on OndeviceProjection; the helper explains."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(models["good"]))
    with pytest.raises(RuntimeError) as info:
        interp.allocate_tensors()
    assert "OndeviceProjection" in str(info.value)
    err = ops.explain_interpreter_error(info.value)
    assert isinstance(err, ops.MissingCustomOpError) and err.op_names == ["OndeviceProjection"]
    msg = str(err)
    assert "\n" not in msg
    for words in ("custom op OndeviceProjection", "ondevice_nlp.ops.make_interpreter",
                  "InterpreterWithCustomOps(custom_op_registerers=[",
                  "ondevice_nlp.ops.tflite_registerer"):
        assert words in msg, msg
    other = RuntimeError("tensor 3 has the wrong type")
    assert ops.explain_interpreter_error(other) is other
    foreign = ops.explain_interpreter_error(
        RuntimeError("Encountered unresolved custom op: Foo.\nSee instructions: x"))
    assert foreign.op_names == ["Foo"] and "Foo" in str(foreign)
    assert "does not provide" in str(foreign)
    # the same model through our loader works
    interp = ops.make_interpreter(model_path=models["good"])
    interp.allocate_tensors()


def test_renamed_custom_op_in_tflite_model(models):
    with pytest.raises(ModelFileError, match="OndeviceProjectioX.*does not provide"):
        TFLiteModel(str(models["renamed_custom_op"]))


def _check_prediction(text, res, intents):
    assert res["intent"] in intents and 0.0 <= res["intent_probability"] <= 1.0
    s = text if isinstance(text, str) else text.decode("utf-8", "surrogateescape")
    prev = 0
    for slot in res["slots"]:
        assert prev <= slot["start"] < slot["end"] <= len(s)
        assert s[slot["start"]:slot["end"]] == slot["text"]
        prev = slot["end"]


def test_hostile_texts_through_tflite_model(models):
    """600 hostile strings (bytes, and str with lone surrogates) + 1 MiB strings: valid
    predictions whose slot offsets cut the text consistently."""
    m = TFLiteModel(str(models["good"]))
    texts = [t for _, t in hostile_text.cases(99, 500)] + hostile_text.fixed_cases()[::3]
    strs = [t.decode("utf-8", "surrogateescape") for t in texts[:100]]
    strs += ["\ud800 lone high", "lone low \udfff x", "\udc80\udcff", "a\ud83d\ude00b"]
    batch = texts + strs + [t for _, t in hostile_text.huge_cases()[:3]]
    assert len(batch) >= 600
    seen = set()
    for i in range(0, len(batch), 64):
        chunk = batch[i:i + 64]
        for t, r in zip(chunk, m.predict_batch(chunk)):
            _check_prediction(t, r, INTENTS)
            seen.add(r["intent"])
    assert len(seen) > 1  # the model's output depends on its input
    with pytest.raises(TypeError):
        m.predict(3)
    with pytest.raises(ValueError, match="empty batch"):
        m.predict_batch([])


def test_predict_from_8_threads_matches_sequential(models):
    """One TFLiteModel, 8 threads started together, each 25 rounds of predict and
    predict_batch on its own slice of texts: the same answers as sequential calls
    (``tools/thread_stress.py``, which repeats this many times)."""
    import thread_stress

    rng = random.Random(3)
    texts = TEXTS + [t.decode("utf-8", "replace") for _, t in hostile_text.cases(4, 70)]
    per_thread = [[rng.choice(texts) for _ in range(6)] for _ in range(8)]
    m = TFLiteModel(str(models["good"]))
    assert len({r["intent"] for ts in per_thread for r in m.predict_batch(ts)}) > 1
    assert thread_stress.one_rep(lambda: thread_stress._Model(str(models["good"]), "default"),
                                 per_thread, rounds=25, timeout=120) == []


def test_one_interpreter_per_batch_size_never_resized_after_a_run(models):
    """Each batch size gets its own interpreter (none is resized after it has run: the XNNPACK
    delegate can answer wrongly on the first run after a resize, see TFLiteModel); at most
    MAX_BATCH_SIZES are kept per thread, least recently used dropped, and answers do not depend
    on which interpreter gave them."""
    m = TFLiteModel(str(models["good"]))
    texts = TEXTS * 3
    want = [m.predict(t) for t in texts]  # batch 1 only
    sizes = [1, 6, 2, 6, 3, 5, 1]  # 5 distinct sizes: 1 is dropped after 5, made again at the end
    for n in sizes:
        got = m.predict_batch(texts[:n])
        assert got == want[:n], n
        runner = m._local.runners[n]
        assert list(m._local.runners)[-1] == n  # most recently used last
        assert runner.get_input_details()["text"]["shape"].tolist() == [n]
    assert list(m._local.runners) == [6, 3, 5, 1]
    assert len(m._local.runners) == TFLiteModel.MAX_BATCH_SIZES

    seen = {}
    t = threading.Thread(target=lambda: (m.predict_batch(texts[:2]), seen.update(m._local.runners)))
    t.start()
    t.join(timeout=60)
    assert list(seen) == [2]  # the other thread's interpreters are its own


def test_thread_stress_tool(models, tmp_path):
    """tools/thread_stress.py: both modes run and agree with sequential calls (the resizing mode
    without the XNNPACK delegate, which is what makes it wrong now and then); a bad file is one
    line and exit status 2."""
    import thread_stress

    good = str(models["good"])
    for mode, resolver in (("model", "default"), ("resize", "no-delegates")):
        p = subprocess.run([sys.executable, str(REPO / "tools" / "thread_stress.py"), good,
                            "--mode", mode, "--op-resolver", resolver, "--reps", "2",
                            "--threads", "3", "--rounds", "2"],
                           capture_output=True, text=True, env=ENV, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"mode {mode} op-resolver {resolver} reps 2 threads 3 rounds 2: 0 mismatches" in p.stdout
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\0" * 64)
    for mode in ("model", "resize"):
        assert thread_stress.main([str(junk), "--mode", mode, "--reps", "1"]) == 2
    assert thread_stress.main([str(tmp_path / "missing.tflite"), "--reps", "1"]) == 2
    # --write-tiny: the fixture's untrained model (same labels, same weights: seed 0), calibrated
    # on the tool's own texts
    tiny = tmp_path / "tiny.tflite"
    assert thread_stress.main(["--write-tiny", str(tiny)]) == 0
    m, ref = TFLiteModel(str(tiny)), TFLiteModel(good)
    assert m.meta["labels"] == ref.meta["labels"] and m.meta["parameters"] > 0
    assert m.predict("set an alarm for 7 am")["intent"] in INTENTS
