"""Linear-chain CRF over the slot tags: loss, decoding, metadata, and `build --crf` end to end."""

import itertools
import json
import os
import random

import numpy as np
import pytest

from ondevice_nlp import cli, tagging
from test_pipeline import _line, write_mtop

TAGS = ["O", "B-A", "I-A", "B-B", "I-B"]


def _path_score(em, trans, path):
    s = trans[-1, path[0]] + em[0, path[0]]
    for t in range(1, len(path)):
        s += trans[path[t - 1], path[t]] + em[t, path[t]]
    return s


@pytest.mark.parametrize("sparse", [False, True])
def test_crf_nll_equals_brute_force_over_all_tag_sequences(sparse):
    """Dense sums, and sparse ones (``allowed`` given) over a pattern whose other
    transitions score DISALLOWED, as CRFTagger's do."""
    import tensorflow as tf

    from ondevice_nlp.crf import DISALLOWED, crf_nll

    rng = np.random.default_rng(0)
    B, L, K = 4, 4, 3
    em = rng.normal(size=(B, L, K)).astype(np.float32)
    trans = rng.normal(size=(K + 1, K)).astype(np.float32)
    lengths = [4, 2, 1, 0]
    mask = np.array([[1.0] * n + [0.0] * (L - n) for n in lengths], np.float32)
    tags = rng.integers(0, K, size=(B, L))
    allowed = None
    if sparse:
        allowed = np.ones((K + 1, K), bool)
        allowed[0, 2] = allowed[1, 1] = allowed[K, 1] = False
        trans[~allowed] = DISALLOWED
        tags[:, :2] = [[0, 0], [2, 1], [0, 0], [0, 0]]  # the gold paths stay allowed
    nll = crf_nll(tf.constant(em), tf.constant(tags), tf.constant(mask), tf.constant(trans),
                  allowed).numpy()
    for b, n in enumerate(lengths):
        if n == 0:
            assert nll[b] == 0.0
            continue
        log_z = np.log(sum(np.exp(_path_score(em[b], trans, p))
                           for p in itertools.product(range(K), repeat=n)))
        want = log_z - _path_score(em[b], trans, tags[b, :n])
        assert nll[b] == pytest.approx(want, rel=1e-5, abs=1e-5)
        assert nll[b] > 0
    # one token, any batch: the L = 1 branch
    one = crf_nll(tf.constant(em[:, :1]), tf.constant(tags[:, :1]), tf.constant(mask[:, :1]),
                  tf.constant(trans), allowed).numpy()
    want = [np.log(np.exp(trans[-1] + em[b, 0]).sum()) - trans[-1, tags[b, 0]] - em[b, 0, tags[b, 0]]
            for b in range(3)]
    np.testing.assert_allclose(one[:3], want, rtol=1e-5)


def test_sparse_crf_sums_equal_the_dense_ones_values_and_gradients():
    """``allowed`` given: log Z and the marginals are summed over the allowed
    transitions only; with the others at DISALLOWED the dense sums give the same
    values and the same gradients (a tag with no allowed predecessor, and one that
    cannot come first, included), whatever the disallowed entries of the
    transition tensor hold."""
    import tensorflow as tf

    from ondevice_nlp.crf import DISALLOWED, crf_log_marginals, crf_nll

    rng = np.random.default_rng(5)
    B, L, K = 6, 7, 9
    allowed = rng.random((K + 1, K)) < 0.4
    allowed[:, 0] = True  # O follows anything
    allowed[:K, 5] = False  # tag 5: no allowed predecessor (first tag only)
    allowed[K, 5] = True
    allowed[K, 3] = False  # tag 3 cannot come first
    em = tf.constant(rng.normal(scale=3.0, size=(B, L, K)).astype(np.float32))
    lengths = [7, 5, 3, 2, 1, 0]
    mask = tf.constant([[1.0] * n + [0.0] * (L - n) for n in lengths])
    tags = tf.constant(np.zeros((B, L), np.int32))  # all O: an allowed path
    learned = tf.Variable(rng.normal(size=(K + 1, K)).astype(np.float32))
    penalty = np.where(allowed, 0.0, DISALLOWED).astype(np.float32)
    junk = np.where(allowed, 0.0, rng.normal(scale=50.0, size=allowed.shape)).astype(np.float32)

    def losses(sparse):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(em)
            if sparse:  # the disallowed entries hold anything: the sparse sums ignore them
                trans = learned * allowed + junk
            else:
                trans = learned * allowed + penalty
            nll = crf_nll(em, tags, mask, trans, allowed if sparse else None)
            marg = crf_log_marginals(em / 2.0, mask, trans / 2.0, allowed if sparse else None)
            # a loss on the marginals of the tags a valid path can take
            ok = tf.stop_gradient(tf.cast(marg > -1e3, tf.float32))
            total = tf.reduce_sum(nll) + tf.reduce_sum(tf.exp(marg) * ok * em)
        grads = tape.gradient(total, [em, learned])
        return nll.numpy(), marg.numpy(), [g.numpy() for g in grads]

    d_nll, d_marg, d_grads = losses(False)
    s_nll, s_marg, s_grads = losses(True)
    np.testing.assert_allclose(s_nll, d_nll, rtol=1e-5, atol=1e-4)
    assert s_nll[-1] == 0.0 and (s_nll[:-1] > 0).all()
    possible = d_marg > -1e3
    assert (~possible).sum() > 0 and possible.sum() > B
    np.testing.assert_allclose(s_marg[possible], d_marg[possible], atol=1e-4)
    assert (s_marg[~possible & (d_marg != 0)] < -1e3).all()
    assert (s_marg[:, 1:, 5] < -1e3)[np.asarray(mask)[:, 1:] > 0].all()  # no predecessor
    assert (s_marg[:-1, 0, 3] < -1e3).all()  # cannot come first
    np.testing.assert_allclose(s_grads[0], d_grads[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s_grads[1][allowed], d_grads[1][allowed], rtol=1e-4, atol=1e-4)
    assert np.abs(s_grads[1][allowed]).max() > 0.1


@pytest.mark.parametrize("sparse", [False, True])
def test_crf_log_marginals_equal_brute_force_over_all_tag_sequences(sparse):
    import tensorflow as tf

    from ondevice_nlp.crf import DISALLOWED, crf_log_marginals

    rng = np.random.default_rng(1)
    B, L, K = 4, 4, 3
    em = rng.normal(size=(B, L, K)).astype(np.float32)
    trans = rng.normal(size=(K + 1, K)).astype(np.float32)
    trans[0, 2] = trans[3, 1] = DISALLOWED  # as CRFTagger's penalty leaves them
    allowed = trans > DISALLOWED if sparse else None
    lengths = [4, 3, 1, 0]
    mask = np.array([[1.0] * n + [0.0] * (L - n) for n in lengths], np.float32)
    got = np.exp(crf_log_marginals(tf.constant(em), tf.constant(mask), tf.constant(trans),
                                   allowed).numpy())
    for b, n in enumerate(lengths):
        want = np.zeros((L, K))
        for p in itertools.product(range(K), repeat=n) if n else ():
            w = np.exp(np.float64(_path_score(em[b], trans, p)))
            for t, k in enumerate(p):
                want[t, k] += w
        if n:
            want /= want[0].sum()
        np.testing.assert_allclose(got[b, :n], want[:n], atol=1e-5)
        assert (got[b, n:] == 1.0).all()  # exp(0): padding is zeroed in log space
    np.testing.assert_allclose(got[:3, 0].sum(-1), 1.0, rtol=1e-5)
    assert got[0, 0, 1] < 1e-30  # the first tag 1 is disallowed (row K)


def test_crf_speed_tool_times_both_sums_of_the_same_loss(capsys, monkeypatch):
    """tools/crf_speed.py: one row per training-step variant, each compiled with
    build's optimizer (train.compile_model), and the sparse and dense CRF give the
    same first-batch loss (with the distillation term)."""
    import re

    from ondevice_nlp import train as T
    from tools import crf_speed

    compiled, compile_model = [], T.compile_model

    def recording(model, *args, **kwargs):
        compile_model(model, *args, **kwargs)
        compiled.append(type(model.optimizer).__name__)

    monkeypatch.setattr(T, "compile_model", recording)
    assert crf_speed.main(["--size", "tiny", "--steps", "1", "--length", "4", "--tags", "7",
                           "--allowed", "12", "--intents", "3", "--batch", "4",
                           "--distill"]) == 0
    out = capsys.readouterr().out
    assert "7 tags, 12 allowed transitions" in out
    for name in ("softmax (--no-crf)", "CRF, sparse sums", "CRF, dense sums"):
        assert re.search(re.escape(f"| {name} | ") + r"\d+ \|", out), out
    sparse, dense = map(float, re.findall(r"sums: ([-\d.e+]+)", out))
    assert sparse == pytest.approx(dense, rel=1e-4) and sparse > 0
    assert compiled == ["AdamW"] * 3
    allowed = crf_speed.random_allowed(np.random.default_rng(0), 149, 911)
    assert allowed[:149].sum() == 911 and allowed[:, 0].all() and allowed[149].all()


def _tiny_tagger(L, F, I, K):
    import tf_keras as keras

    feats = keras.Input((None, F), name="features")
    mask = keras.Input((None,), name="mask")
    h = keras.layers.Dense(8, activation="tanh")(feats)
    intent = keras.layers.Dense(I)(keras.layers.GlobalAveragePooling1D()(h))
    slots = keras.layers.Dense(K)(h)
    return keras.Model({"features": feats, "mask": mask}, [intent, slots])


def test_crf_distillation_loss_matches_its_definition():
    """`CRFTagger(distill=(T, w))`: w = 0 is the plain CRF loss; a teacher equal to the
    student's own CRF marginals costs nothing at w = 1; otherwise the KL of the definition."""
    import tensorflow as tf

    from ondevice_nlp.crf import CRFTagger, crf_log_marginals
    from ondevice_nlp.distill import distill_loss_fn

    rng = np.random.default_rng(2)
    B, L, F, I = 3, 5, 6, 4
    allowed = tagging.bio_allowed_transitions(TAGS)
    K = len(TAGS)
    net = _tiny_tagger(L, F, I, K)
    init = rng.normal(size=allowed.shape)
    x = {"features": tf.constant(rng.normal(size=(B, L, F)).astype(np.float32)),
         "mask": tf.constant([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], tf.float32)}
    intent = np.array([0, 3, 1])
    tags = np.array([[1, 2, 0, 3, 4], [3, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    iw = tf.constant([1.0, 1.0, 0.0])  # the last intent unseen in training
    plain = CRFTagger(net, allowed, init=init)
    want_i, want_s = plain.batch_losses((x, (tf.constant(intent), tf.constant(tags)), (iw, iw)))
    T = 2.0
    il, sl = net(x)
    trans = plain.crf_transitions + plain.penalty
    own = (crf_log_marginals(sl / T, x["mask"], trans / T) * T).numpy()

    def batch(t_int, t_slot):
        yi = np.concatenate([intent[:, None], t_int], 1).astype(np.float32)
        ys = np.concatenate([tags[:, :, None], t_slot], 2).astype(np.float32)
        return x, (tf.constant(yi), tf.constant(ys)), (iw, iw)

    t_int = rng.normal(size=(B, I)).astype(np.float32)
    t_slot = rng.normal(size=(B, L, K)).astype(np.float32)
    kd0 = CRFTagger(net, allowed, init=init, distill=(T, 0.0))
    got_i, got_s = kd0.batch_losses(batch(t_int, t_slot))
    assert float(got_s) == pytest.approx(float(want_s), rel=1e-5)
    assert float(got_i) == pytest.approx(float(want_i), rel=1e-5)

    kd1 = CRFTagger(net, allowed, init=init, distill=(T, 1.0))
    assert float(kd1.batch_losses(batch(t_int, own))[1]) == pytest.approx(0.0, abs=1e-4)

    # a random teacher: T^2 KL over the tags the CRF can give, mean over real tokens
    _, got = kd1.batch_losses(batch(t_int, t_slot))
    log_q = own / T
    m = x["mask"].numpy()
    kl = 0.0
    for b in range(B):
        for t in range(int(m[b].sum())):
            ok = log_q[b, t] > -1e3
            p = np.exp(t_slot[b, t, ok] / T - np.logaddexp.reduce(t_slot[b, t, ok] / T))
            kl += (p * (np.log(p) - log_q[b, t, ok])).sum()
    assert float(got) == pytest.approx(T * T * kl / m.sum(), rel=1e-4)
    # the intent term is distill_loss_fn's, weighted and averaged over the batch
    per = distill_loss_fn(T, 1.0)(tf.constant(np.concatenate([intent[:, None], t_int], 1)),
                                  il).numpy()
    got_i = kd1.batch_losses(batch(t_int, t_slot))[0]
    assert float(got_i) == pytest.approx(float((per * iw.numpy()).sum() / B), rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        CRFTagger(net, allowed, distill=(0.0, 0.5))


def _valid_paths(allowed, n):
    K = allowed.shape[1]
    for p in itertools.product(range(K), repeat=n):
        if allowed[-1, p[0]] and all(allowed[p[i - 1], p[i]] for i in range(1, n)):
            yield p


def test_viterbi_with_transition_scores_is_the_best_valid_path():
    rng = np.random.default_rng(1)
    allowed = tagging.bio_allowed_transitions(TAGS)
    for trial in range(20):
        n = 1 + trial % 4
        em = rng.normal(size=(n, len(TAGS)))
        trans = rng.normal(scale=2.0, size=allowed.shape)
        got = tagging.viterbi_bio(em, allowed, trans)
        best = max(_valid_paths(allowed, n), key=lambda p: _path_score(em, trans, p))
        assert tuple(got) == best
    # a strong transition score overrides the per-token argmax, which is valid IOB2
    em = np.array([[0.0, 2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.9, 0.0, 0.0]])
    assert list(tagging.viterbi_bio(em, allowed)) == [1, 1]
    trans = np.zeros(allowed.shape)
    trans[1, 2] = 1.0  # B-A -> I-A
    assert list(tagging.viterbi_bio(em, allowed, trans)) == [1, 2]
    with pytest.raises(ValueError, match="transition scores"):
        tagging.viterbi_bio(em, allowed, trans[:-1])


def test_joint_decode_with_crf_scores_the_whole_path():
    rng = np.random.default_rng(2)
    allowed = tagging.bio_allowed_transitions(TAGS)
    intent_tags = np.array([[True, True, True, False, False], [True, False, False, True, True]])
    for trial in range(10):
        n = 1 + trial % 3
        em = rng.normal(size=(n, len(TAGS)))
        trans = rng.normal(size=allowed.shape)
        probs = rng.dirichlet([1.0, 1.0])
        k, ids = tagging.joint_decode(probs, em, allowed, intent_tags, transition_scores=trans)
        best = max(((np.log(probs[i]) + _path_score(em, trans, p), i, p)
                    for i in range(2) for p in _valid_paths(allowed & intent_tags[i][None], n)),
                   key=lambda c: c[0])
        assert (k, tuple(ids)) == (best[1], best[2])


def test_transition_scores_round_trip_through_metadata_text_and_reject_bad_text():
    rng = np.random.default_rng(3)
    allowed = tagging.bio_allowed_transitions(TAGS)
    trans = rng.normal(size=allowed.shape)
    text = tagging.pack_transition_scores(trans, allowed)
    back = tagging.unpack_transition_scores(text, allowed)
    np.testing.assert_allclose(back[allowed], trans[allowed].astype(np.float32))
    assert (back[~allowed] == 0).all()
    with pytest.raises(ValueError, match="bytes"):
        tagging.unpack_transition_scores(text, allowed & (np.arange(allowed.shape[1]) > 0))
    with pytest.raises(ValueError, match="base64"):
        tagging.unpack_transition_scores("not base64!", allowed)
    bad = trans.copy()
    bad[allowed] = np.nan
    with pytest.raises(ValueError, match="finite"):
        tagging.unpack_transition_scores(tagging.pack_transition_scores(bad, allowed), allowed)


# ---------------------------------------------------------------- end to end

DATES = ["today", "tomorrow", "tonight", "on monday", "at 7 pm", "at noon"]


def _examples(rng, n):
    out = []
    for _ in range(n):
        a, b = rng.sample(DATES, 2)
        if rng.random() < 0.5:  # two adjacent DATE_TIME spans
            out.append(_line(f"remind me {a} {b} to call mom", "CREATE_REMINDER",
                             [("DATE_TIME", a), ("DATE_TIME", b), ("TODO", "call mom")]))
        else:
            out.append(_line(f"what is on my calendar {a}", "GET_EVENT", [("DATE_TIME", a)]))
    return out


@pytest.fixture(scope="module")
def crf_build(tmp_path_factory):
    rng = random.Random(0)
    counts = (("train", 240), ("eval", 30), ("test", 30))
    root = write_mtop(tmp_path_factory.mktemp("mtop_crf"), {s: _examples(rng, n) for s, n in counts})
    out = tmp_path_factory.mktemp("out_crf")
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--size", "tiny", "--out", str(out), "--epochs", "6",  # CRF: the default
                   "--qat-epochs", "1", "--batch-size", "16", "--lr", "1e-2", "--qat-lr", "1e-3"])
    assert rc == 0
    return root, out


def test_build_crf_learns_transitions_and_the_file_decodes_like_keras(crf_build):
    """`build` (the CRF is its default): the .tflite carries the learned transitions and
    decodes like its QAT model."""
    import tensorflow as tf  # noqa: F401  (loads the TF op library)
    import tf_keras as keras

    from ondevice_nlp import train as T
    from ondevice_nlp.configs import get_size
    from ondevice_nlp.crf import CRFTagger
    from ondevice_nlp.data import load_dataset
    from ondevice_nlp.models.pnlp_mixer import build_pnlp_mixer
    from ondevice_nlp.tflite_model import TFLiteModel

    root, out = crf_build
    m = json.loads((out / "metrics.json").read_text())
    assert m["crf"] is True
    assert m["keras"]["en"]["exact_match"] >= 0.6
    assert abs(m["tflite"]["en"]["exact_match"] - m["keras_qat"]["en"]["exact_match"]) <= 0.1

    tfl = TFLiteModel(str(out / "model.tflite"))
    assert tfl.crf_transitions is not None and tfl.crf_transitions.shape == tfl.allowed.shape
    assert np.abs(tfl.crf_transitions[tfl.allowed]).max() > 0.05  # learned, not the zero start
    assert (tfl.crf_transitions[~tfl.allowed] == 0).all()

    # the QAT checkpoint holds the wrapper's weights: the transitions equal the file's
    size = get_size("tiny")
    proj = size.projection
    net = build_pnlp_mixer(size.net, max_tokens=proj.max_tokens, feature_size=proj.feature_size,
                           window=size.window, num_intents=len(tfl.intents),
                           num_tags=len(tfl.tags))
    qat = CRFTagger(T.quantize_aware(net), tfl.allowed)
    qat.load_weights(str(out / "checkpoints" / "qat.weights.h5"))
    np.testing.assert_allclose(qat.transition_scores()[tfl.allowed],
                               tfl.crf_transitions[tfl.allowed], rtol=1e-6)

    labels = T.Labels(tfl.intents, tfl.tags)
    test = load_dataset("mtop", str(root), ["en"], "test")["en"]
    enc = T.encode(test, labels, proj.max_tokens)
    k_int, k_tags = T.keras_predict(qat, enc, proj, allowed=tfl.allowed,
                                    intent_tags=tfl.intent_tags,
                                    transition_scores=tfl.crf_transitions)
    decoded = tfl.decode_batch([e.text for e in test])
    assert np.mean([tfl.intents[int(i)] == d[0] for i, d in zip(k_int, decoded)]) >= 0.95
    spans = T.decode_predictions(enc, labels, k_int, k_tags)[1]
    assert np.mean([list(a) == list(d[2]) for a, d in zip(spans, decoded)]) >= 0.9
    keras.backend.clear_session()


def test_int8_layer_error_tool_reads_a_crf_checkpoint(crf_build, capsys):
    """tools/int8_layer_error.py loads the CRF wrapper's QAT checkpoint (the network inside
    it) and finds the file tracking it: small relative errors, not a fresh network's."""
    from tools import int8_layer_error as tool

    root, out = crf_build
    assert tool.main([str(out), "--data-dir", str(root), "--languages", "en", "--n", "10"]) == 0
    rows = [ln.split("|") for ln in capsys.readouterr().out.splitlines()
            if ln.startswith("| quant")]
    errors = {r[1].strip(): float(r[3]) for r in rows}
    assert {"quant_bottleneck", "quant_intent", "quant_slots"} <= set(errors)
    assert all(0.0 <= e < 0.25 for e in errors.values()), errors


def test_corrupt_crf_transitions_in_the_file_are_a_clear_error(crf_build, tmp_path):
    from ondevice_nlp.tflite_model import ModelFileError, add_metadata, read_metadata

    _, out = crf_build
    buf = (out / "model.tflite").read_bytes()
    meta = read_metadata(buf)
    meta.pop("format")
    meta["labels"]["crf_transitions"] = meta["labels"]["crf_transitions"][:-8]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(add_metadata(buf, meta))
    from ondevice_nlp.tflite_model import TFLiteModel
    with pytest.raises(ModelFileError, match="labels.crf_transitions"):
        TFLiteModel(str(bad))


@pytest.fixture(scope="module")
def plain_build(crf_build, tmp_path_factory):
    """A second, CRF-free tiny build on crf_build's data: the other ensemble member."""
    root, _ = crf_build
    out = tmp_path_factory.mktemp("out_plain")
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--size", "tiny", "--out", str(out), "--epochs", "3", "--qat-epochs", "1",
                   "--batch-size", "16", "--lr", "1e-2", "--qat-lr", "1e-3", "--no-crf"])
    assert rc == 0
    return out


def _ensemble(root, members, out):
    return cli.main(["teacher", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                     "--teacher-model", "ensemble", "--members", ",".join(map(str, members)),
                     "--out", str(out)])


def _softmax(z):
    z = np.asarray(z, np.float64)
    return np.exp(z - np.logaddexp.reduce(z, axis=-1, keepdims=True))


def test_ensemble_teacher_averages_its_members(crf_build, plain_build, tmp_path):
    """`teacher --teacher-model ensemble`: soft targets are the mean of the members'
    distributions; one plain member scores what its build measured for the float model."""
    from ondevice_nlp.distill import load_teacher

    root, crf_out = crf_build
    dirs = {k: tmp_path / k for k in ("plain", "crf", "both")}
    assert _ensemble(root, [plain_build], dirs["plain"]) == 0
    assert _ensemble(root, [crf_out], dirs["crf"]) == 0
    assert _ensemble(root, [plain_build, crf_out], dirs["both"]) == 0
    t = {k: load_teacher(str(d)) for k, d in dirs.items()}
    np.testing.assert_allclose(_softmax(t["both"].intent_logits),
                               (_softmax(t["plain"].intent_logits) +
                                _softmax(t["crf"].intent_logits)) / 2, atol=1e-5)
    np.testing.assert_allclose(_softmax(t["both"].slot_logits),
                               (_softmax(t["plain"].slot_logits) +
                                _softmax(t["crf"].slot_logits)) / 2, atol=3e-3)  # float16
    # the CRF member's token distributions are its marginals: they sum to 1 and give
    # no mass to a tag no valid sequence can have there (I- on the first token)
    crf_p = np.exp(t["crf"].slot_logits.astype(np.float64))
    np.testing.assert_allclose(crf_p.sum(-1), 1.0, atol=1e-2)
    meta = json.loads((dirs["crf"] / "teacher.json").read_text())
    inside = [k for k, tag in enumerate(meta["labels"]["tags"]) if tag.startswith("I-")]
    firsts = np.concatenate([[0], np.cumsum(t["crf"].slot_lengths)[:-1]])
    assert crf_p[firsts][:, inside].max() < 1e-6

    plain_metrics = json.loads((plain_build / "metrics.json").read_text())["keras"]["en"]
    meta = json.loads((dirs["plain"] / "teacher.json").read_text())
    for k in ("exact_match", "intent_accuracy", "slot_f1"):
        assert meta["metrics"]["test"]["en"][k] == pytest.approx(plain_metrics[k], abs=1e-9)
    both = json.loads((dirs["both"] / "teacher.json").read_text())
    assert both["model"] == "ensemble" and both["size"] == "2 members"
    assert [m["crf"] for m in both["members"]] == [False, True]
    assert both["parameters"] == sum(m["parameters"] for m in both["members"]) > 0
    assert both["members"][0]["metrics"]["test"]["en"] == meta["metrics"]["test"]["en"]


def _relabelled_copy(run, dst, field):
    """A copy of build folder ``run`` whose .tflite metadata lists labels.<field> reversed."""
    import shutil

    from ondevice_nlp.tflite_model import add_metadata, read_metadata

    shutil.copytree(run, dst)
    buf = (dst / "model.tflite").read_bytes()
    meta = read_metadata(buf)
    meta["labels"][field] = meta["labels"][field][::-1]
    (dst / "model.tflite").write_bytes(add_metadata(buf, meta))
    return dst


def test_ensemble_teacher_bad_members_are_clear_errors(crf_build, plain_build, tmp_path, capsys):
    root, _ = crf_build
    assert _ensemble(root, [tmp_path], tmp_path / "t") != 0
    assert f"{tmp_path / 'model.tflite'}: missing" in capsys.readouterr().err
    other = _relabelled_copy(plain_build, tmp_path / "other", "intents")
    assert _ensemble(root, [plain_build, other], tmp_path / "t") != 0
    err = capsys.readouterr().err
    assert "model.tflite: metadata field 'labels.intents'" in err and "--languages" in err
    rc = cli.main(["teacher", "--dataset", "mtop", "--data-dir", str(root), "--members",
                   str(plain_build), "--out", str(tmp_path / "t")])
    assert rc != 0 and "--members goes with --teacher-model ensemble" in capsys.readouterr().err


def test_ensemble_subsets_tool_scores_subsets_like_the_teacher(crf_build, plain_build, tmp_path,
                                                             capsys):
    """tools/ensemble_subsets.py: every subset decoded as `teacher --teacher-model ensemble`
    decodes it, so its figures for a subset equal that teacher's own eval and test EM."""
    from tools import ensemble_subsets

    root, crf_out = crf_build
    assert _ensemble(root, [plain_build, crf_out], tmp_path / "t") == 0
    want = json.loads((tmp_path / "t" / "teacher.json").read_text())
    rc = ensemble_subsets.main(["--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                                "--members", f"{plain_build},{crf_out}", "--min-size", "1"])
    assert rc == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| top")]
    assert len(lines) == 3  # two members alone, the pair
    rows = {ln.split(":", 1)[1].split("|")[0].strip(): ln.split("|")[3:5] for ln in lines}
    pair = rows[f"{plain_build.name}, {crf_out.name}"]
    for got, split in zip(pair, ("eval", "test")):
        assert float(got) == pytest.approx(100 * want["metrics"][split]["en"]["exact_match"],
                                           abs=0.006)
    alone = rows[plain_build.name]
    assert float(alone[1]) == pytest.approx(100 * want["members"][0]["metrics"]["test"]["en"]
                                            ["exact_match"], abs=0.006)
    with pytest.raises(SystemExit) as e:  # checked before any member is loaded
        ensemble_subsets.main(["--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                               "--members", str(plain_build), "--min-size", "2"])
    assert e.value.code == 2 and "--min-size 2" in capsys.readouterr().err


def test_ensemble_subsets_tool_bad_members_are_one_line_errors(crf_build, plain_build, tmp_path,
                                                              capsys):
    """tools/ensemble_subsets.py checks members as the ensemble teacher does and reports its
    errors as usage errors (exit 2, one line naming the file and field)."""
    from tools import ensemble_subsets

    root, _ = crf_build
    base = ["--dataset", "mtop", "--data-dir", str(root), "--languages", "en", "--min-size", "1"]
    with pytest.raises(SystemExit) as e:  # a folder without model.tflite
        ensemble_subsets.main(base + ["--members", f"{plain_build},{tmp_path}"])
    assert e.value.code == 2 and f"{tmp_path / 'model.tflite'}: missing" in capsys.readouterr().err
    other = _relabelled_copy(plain_build, tmp_path / "other", "tags")
    with pytest.raises(SystemExit) as e:
        ensemble_subsets.main(base + ["--members", f"{plain_build},{other}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "model.tflite: metadata field 'labels.tags'" in err


def test_build_crf_distils_from_an_ensemble_teacher(crf_build, plain_build, tmp_path):
    """`build --crf --teacher T`: trains (CRF marginals against the soft targets), exports,
    and reports the student against the teacher."""
    root, crf_out = crf_build
    assert _ensemble(root, [plain_build, crf_out], tmp_path / "t") == 0
    out = tmp_path / "student"
    rc = cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                   "--size", "tiny", "--crf", "--teacher", str(tmp_path / "t"),
                   "--out", str(out), "--epochs", "4", "--qat-epochs", "1", "--batch-size", "16",
                   "--lr", "1e-2", "--qat-lr", "1e-3"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["crf"] is True and m["distillation"]["teacher_model"] == "ensemble"
    assert m["keras"]["en"]["exact_match"] >= 0.5
    assert abs(m["tflite"]["en"]["exact_match"] - m["keras_qat"]["en"]["exact_match"]) <= 0.1
    assert m["distillation"]["percent_of_teacher"]["tflite"]["en"]["exact_match"] > 0


def test_interrupted_crf_training_restores_transitions_and_optimizer(tmp_path, caplog):
    """`train.fit` with a backup folder: a CRF run stopped after epoch 1 continues at epoch 2
    from the saved transitions, network weights and optimizer state, and ends where an
    uninterrupted run ends. The wrapper is built when made, so BackupAndRestore does not
    warn about an unbuilt model."""
    import tensorflow as tf
    import tf_keras as keras

    from ondevice_nlp import train as T
    from ondevice_nlp.crf import CRFTagger

    B, L, F, I, K = 4, 5, 8, 3, len(TAGS)
    rng = np.random.default_rng(0)
    n = 16
    x = {"features": rng.normal(size=(n, L, F)).astype(np.float32),
         "mask": np.ones((n, L), np.float32)}
    y = (rng.integers(0, I, n), rng.integers(0, K, (n, L)))
    w = (np.ones(n, np.float32), np.ones((n, L), np.float32))
    ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(B)
    allowed = np.ones((K + 1, K), bool)

    def wrapper():
        keras.utils.set_random_seed(1)
        feats = keras.Input((None, F), name="features")
        mask = keras.Input((None,), name="mask")
        h = keras.layers.Dense(6, activation="relu")(feats)
        net = keras.Model({"features": feats, "mask": mask},
                          (keras.layers.Dense(I)(keras.layers.GlobalAveragePooling1D()(h)),
                           keras.layers.Dense(K)(h)))
        m = CRFTagger(net, allowed)
        T.compile_model(m, 1e-2, 8, warmup_steps=0)
        return m

    class Stop(keras.callbacks.Callback):
        tag = "float"

        def __init__(self, stop_after=None):
            super().__init__()
            self.stop_after, self.seen = stop_after, {}

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == self.stop_after:  # after the backup of the epoch before
                raise RuntimeError("interrupted")
            self.seen[epoch] = (int(self.model.optimizer.iterations.numpy()),
                                self.model.crf_transitions.numpy().copy(),
                                [v.numpy().copy() for v in self.model.tagger.weights])

        def on_epoch_end(self, epoch, logs=None):
            self.saved = (self.model.crf_transitions.numpy().copy(),
                          [v.numpy().copy() for v in self.model.tagger.weights])

    backup = str(tmp_path / "backup")
    first = Stop(stop_after=1)
    with pytest.raises(RuntimeError, match="interrupted"):
        T.fit(wrapper(), ds, 2, first, 0, backup_dir=backup)
    assert np.abs(first.saved[0]).max() > 0  # the transitions did train in epoch 1
    again = Stop()
    T.fit(wrapper(), ds, 2, again, 0, backup_dir=backup)
    assert list(again.seen) == [1]  # only epoch 2 ran
    steps, trans, weights = again.seen[1]
    assert steps == n // B
    np.testing.assert_array_equal(trans, first.saved[0])
    for a, b in zip(weights, first.saved[1]):
        np.testing.assert_array_equal(a, b)
    # and ends where an uninterrupted run ends: the AdamW moments came back too
    whole = Stop()
    T.fit(wrapper(), ds, 2, whole, 0)
    np.testing.assert_allclose(again.saved[0], whole.saved[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(again.saved[1], whole.saved[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert "is unbuilt" not in caplog.text  # the wrapper is built when made
    keras.backend.clear_session()
