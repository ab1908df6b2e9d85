"""pQRNN: fo-pooling against a plain NumPy recurrence, dynamic == static model,
QAT + int8 export with builtin ops only, and the named sizes."""

from __future__ import annotations

import dataclasses
import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from ondevice_nlp.models import pqrnn as P

H = 5


def numpy_fo_pooling(gates: np.ndarray, mask: np.ndarray, zoneout: float = 0.0) -> np.ndarray:
    """Reference: per utterance and direction, the textbook recurrence over its real tokens.

    gates [B, S, 6H] = [z_fw, z_bw, f_fw, f_bw, o_fw, o_bw]; returns [B, S, 2H], 0 at padding.
    Inference-mode zoneout: the input gate (1 - f) times (1 - zoneout).
    """
    B, S, _ = gates.shape
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    z, f, o = np.tanh(gates[..., :2 * H]), sig(gates[..., 2 * H:4 * H]), sig(gates[..., 4 * H:])
    out = np.zeros((B, S, 2 * H))
    for b in range(B):
        n = int(mask[b].sum())
        for lo, order in ((0, range(n)), (H, range(n - 1, -1, -1))):
            c = np.zeros(H)
            for t in order:
                ch = slice(lo, lo + H)
                g = (1.0 - f[b, t, ch]) * (1.0 - zoneout)
                c = (1.0 - g) * c + g * z[b, t, ch]
                out[b, t, ch] = o[b, t, ch] * c
    return out


def _gates_and_mask(lengths, S, seed=0):
    rng = np.random.default_rng(seed)
    mask = (np.arange(S)[None] < np.asarray(lengths)[:, None]).astype("float32")
    gates = rng.normal(0.0, 2.0, (len(lengths), S, 6 * H)).astype("float32")
    return gates, mask


@pytest.mark.parametrize("scan", P.SCANS)
@pytest.mark.parametrize("zoneout", [0.0, 0.25])
def test_pooling_matches_numpy_recurrence(scan, zoneout):
    """Both directions, with padding (lengths 0..S), every scan; zoneout at inference."""
    S = 11
    gates, mask = _gates_and_mask([11, 7, 1, 0, 4], S)
    layer = P.QRNNPooling(H, zoneout=zoneout, scan=scan)
    got = layer([gates, mask], training=False).numpy()
    np.testing.assert_allclose(got, numpy_fo_pooling(gates, mask, zoneout), atol=2e-6)


def test_pooling_dynamic_length_matches_numpy_recurrence():
    """The dynamic-S path (a tf.while_loop over scan levels) on a batch of unknown length."""
    layer = P.QRNNPooling(H)
    fn = tf.function(lambda g, m: layer([g, m], training=False),
                     input_signature=[tf.TensorSpec([None, None, 6 * H]),
                                      tf.TensorSpec([None, None])])
    for S in (1, 2, 5, 9, 33):
        gates, mask = _gates_and_mask([S, max(S - 3, 0), 1], S, seed=S)
        np.testing.assert_allclose(fn(gates, mask).numpy(), numpy_fo_pooling(gates, mask),
                                   atol=2e-6)


def test_zoneout_keeps_previous_state_with_probability_p():
    """Training: each unit keeps c_{t-1} exactly with probability p (here o = 1 so h = c)."""
    p, S = 0.3, 40
    gates, mask = _gates_and_mask([S] * 8, S, seed=1)
    gates[..., 4 * H:] = 30.0  # o = sigmoid(30) = 1: the output is the state
    layer = P.QRNNPooling(H, zoneout=p)
    c = layer([gates, mask], training=True).numpy()
    # (the log-depth scan composes steps, so a kept state is equal up to float rounding)
    fw_same = np.abs(c[:, 1:, :H] - c[:, :-1, :H]) < 1e-6
    bw_same = np.abs(c[:, :-1, H:] - c[:, 1:, H:]) < 1e-6
    kept = np.concatenate([fw_same.ravel(), bw_same.ravel()]).mean()
    assert abs(kept - p) < 0.05, kept
    # inference is deterministic and equals the expectation-scaled reference
    np.testing.assert_allclose(layer([gates, mask], training=False).numpy(),
                               numpy_fo_pooling(gates, mask, p), atol=2e-6)


def _tiny_models(scan="parallel", **over):
    size = P.QRNN_SIZES["tiny"]
    cfg = dataclasses.replace(size.net, scan=scan, **over)
    kw = dict(feature_size=size.projection.feature_size, window=0, num_intents=4, num_tags=6)
    return (P.build_pqrnn(cfg, max_tokens=None, **kw),
            P.build_pqrnn(cfg, max_tokens=size.projection.max_tokens, **kw))


@pytest.mark.parametrize("scan", P.SCANS)
def test_dynamic_and_static_models_agree(scan):
    """Same layer names and weight shapes; same outputs on real tokens for a batch cut to
    its longest utterance (dynamic) and padded to S (static), also with junk at padding."""
    dyn, sta = _tiny_models(scan, zoneout=0.2, dropout=0.2)
    assert [layer.name for layer in dyn.layers] == [layer.name for layer in sta.layers]
    assert [w.shape for w in dyn.weights] == [w.shape for w in sta.weights]
    rng = np.random.default_rng(0)
    for w in dyn.weights:  # non-trivial weights everywhere (LayerNorm scale/bias included)
        w.assign(rng.normal(0.0, 0.5, w.shape))
    P.copy_weights(dyn, sta)
    S, F = sta.input_shape[0][1], sta.input_shape[0][2]
    lengths = np.array([3, 9, 1, 6])
    mask = (np.arange(S)[None] < lengths[:, None]).astype("float32")
    x = rng.integers(-1, 2, (4, S, F)).astype("float32") * mask[..., None]
    Lmax = lengths.max()
    i_d, s_d = dyn({"features": x[:, :Lmax], "mask": mask[:, :Lmax]}, training=False)
    junk = x + (1.0 - mask[..., None]) * rng.normal(0.0, 3.0, x.shape).astype("float32")
    for feats in (x, junk):
        i_s, s_s = sta({"features": feats, "mask": mask}, training=False)
        np.testing.assert_allclose(i_s.numpy(), i_d.numpy(), atol=1e-4)
        for b, n in enumerate(lengths):
            np.testing.assert_allclose(s_s.numpy()[b, :n], s_d.numpy()[b, :n], atol=1e-4)
    assert np.abs(i_d.numpy()).max() > 0.1  # not trivially zero


def test_bottleneck_layernorm_sees_no_padding_statistics():
    """The bottleneck LayerNorm's input: real rows are the bottleneck's output, padding rows
    copies of the first token's (so its int8 variance and 1/std ranges are real tokens')."""
    import tf_keras as keras

    _, sta = _tiny_models()
    rng = np.random.default_rng(1)
    for w in sta.weights:
        w.assign(rng.normal(0.0, 0.5, w.shape))
    S, F = sta.input_shape[0][1], sta.input_shape[0][2]
    lengths = np.array([3, 16, 1])
    mask = (np.arange(S)[None] < lengths[:, None]).astype("float32")
    x = rng.integers(-1, 2, (3, S, F)).astype("float32") * mask[..., None]
    probe = keras.Model(sta.inputs, [sta.get_layer("bottleneck").output,
                                     sta.get_layer("bottleneck_ln").input])
    dense, ln_in = (t.numpy() for t in probe({"features": x, "mask": mask}))
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(ln_in[b, :n], dense[b, :n])
        np.testing.assert_array_equal(ln_in[b, n:], np.broadcast_to(dense[b, :1], (S - n, 16)))
    assert not np.allclose(dense[0, 3:], dense[0, :1])  # padding rows differed before the fill


def test_copy_weights_rejects_other_shapes():
    dyn, _ = _tiny_models()
    other = P.build_pqrnn(dataclasses.replace(P.QRNN_SIZES["tiny"].net, state=9),
                          max_tokens=16, feature_size=64, window=0, num_intents=4, num_tags=6)
    with pytest.raises(ValueError, match="qrnn0_gates"):
        P.copy_weights(dyn, other)


def test_bad_configs_are_clear_errors():
    with pytest.raises(ValueError, match="kernel_width"):
        P.QRNNConfig(kernel_width=2)
    with pytest.raises(ValueError, match="zoneout"):
        P.QRNNConfig(zoneout=1.0)
    with pytest.raises(ValueError, match="scan"):
        P.QRNNConfig(scan="fast")
    with pytest.raises(ValueError, match="window"):
        P.build_pqrnn(P.QRNNConfig(), max_tokens=8, feature_size=8, window=1, num_intents=2,
                      num_tags=2)


def test_sizes_use_ternary_projection_without_window():
    for name, size in P.QRNN_SIZES.items():
        assert size.projection.method == "ternary" and size.projection.window == 0, name
        assert size.window == 0, name


def test_parameter_counts_of_named_sizes():
    """MTOP heads (117 intents, 157 tags): about 1 M and 2 M parameters (int8 ~1 byte each)."""
    counts = {}
    for name in ("1mb", "2mb"):
        size = P.QRNN_SIZES[name]
        m = P.build_pqrnn(size.net, max_tokens=None, feature_size=size.projection.feature_size,
                          window=0, num_intents=117, num_tags=157)
        counts[name] = m.count_params()
    assert 0.95e6 <= counts["1mb"] <= 1.08e6, counts
    assert 1.9e6 <= counts["2mb"] <= 2.05e6, counts


# ---------------------------------------------------------------------- end to end

INTENTS = ["GET_WEATHER", "CREATE_ALARM", "SEND_MESSAGE"]


def _examples(rng, n):
    from ondevice_nlp.data.example import Example, Slot

    out = []
    for _ in range(n):
        k = rng.randrange(3)
        head, value = [("what is the weather in", rng.choice(["Paris", "Berlin", "New York"])),
                       ("set an alarm for", rng.choice(["7 am", "noon", "six thirty"])),
                       ("send a message to", rng.choice(["Bob", "Chen Li", "Dana"]))][k]
        text = f"{head} {value}"
        slot = Slot(["LOCATION", "DATE_TIME", "RECIPIENT"][k], len(head) + 1, len(text))
        out.append(Example(text, "en", INTENTS[k], (slot,)))
    return out


def _op_table(buf: bytes):
    """[(subgraph, operator name, first input dtype name, first output (scale, zero point))]
    of a .tflite flatbuffer (scale/zero point None when the output is not quantized)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    rows = []
    for si, g in enumerate(model.subgraphs):
        for op in g.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = (code.customCode.decode() if code.customCode
                    else names[max(code.builtinCode, code.deprecatedBuiltinCode)])
            first = op.inputs[0] if len(op.inputs) else -1
            q = g.tensors[op.outputs[0]].quantization
            qparams = ((float(q.scale[0]), int(q.zeroPoint[0]))
                       if q is not None and q.scale is not None and len(q.scale) else None)
            rows.append((si, name, types[g.tensors[first].type] if first >= 0 else None, qparams))
    return rows


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Tiny pQRNN: float training (dynamic model, batches cut to their longest utterance),
    weights copied to the static model, QAT through train.quantize_aware, int8 export."""
    import tf_keras as keras

    from ondevice_nlp import ops
    from ondevice_nlp import train as T
    from ondevice_nlp.export import convert_int8
    from ondevice_nlp.tflite_model import TFLiteModel

    keras.utils.set_random_seed(0)
    rng = random.Random(0)
    size = P.QRNN_SIZES["tiny"]
    proj, S = size.projection, size.projection.max_tokens
    train_ex, test_ex = _examples(rng, 192), _examples(rng, 40)
    labels = T.Labels.from_examples(train_ex)
    enc = T.encode(train_ex, labels, S)
    feats, mask, _ = (t.numpy() for t in ops.projection(list(enc.texts), proj.to_vector()))
    kw = dict(feature_size=proj.feature_size, window=0, num_intents=len(labels.intents),
              num_tags=len(labels.tags))
    dyn = P.build_pqrnn(size.net, max_tokens=None, **kw)
    T.compile_model(dyn, 1e-2, 80, warmup_steps=0)
    for step in range(80):
        i = np.arange(step * 16, step * 16 + 16) % len(train_ex)
        n = int(mask[i].sum(1).max())
        dyn.train_on_batch({"features": feats[i, :n], "mask": mask[i, :n]},
                           (enc.intents[i], enc.tags[i, :n]))
    sta = P.build_pqrnn(size.net, max_tokens=S, **kw)
    P.copy_weights(dyn, sta)
    qat = T.quantize_aware(P.annotate_for_qat(sta))
    ds = tf.data.Dataset.from_tensor_slices(
        ({"features": feats, "mask": mask}, (enc.intents, enc.tags))).batch(16).repeat()
    T.calibrate_quantization_ranges(qat, ds, steps=12)
    T.compile_model(qat, 1e-3, 6, warmup_steps=0)
    qat.fit(ds, steps_per_epoch=6, epochs=1, verbose=0)
    buf = convert_int8(qat, proj, list(enc.texts[:32]), {"labels": labels.to_json()})
    path = tmp_path_factory.mktemp("pqrnn") / "model.tflite"
    path.write_bytes(buf)
    return {"qat": qat, "tfl": TFLiteModel(str(path)), "buf": buf, "labels": labels,
            "test": test_ex, "proj": proj}


def test_tflite_agrees_with_qat_keras(exported):
    from ondevice_nlp import train as T

    e = exported
    enc = T.encode(e["test"], e["labels"], e["proj"].max_tokens)
    k_int, k_tags = T.keras_predict(e["qat"], enc, e["proj"])
    res = e["tfl"].run([x.text for x in e["test"]])
    assert (res["token_mask"] == enc.mask).all()
    t_int = np.argmax(res["intent_probs"], -1)
    real = enc.mask > 0
    assert np.mean(t_int == k_int) >= 0.9
    assert np.mean(res["slot_tags"][real] == k_tags[real]) >= 0.9
    # the task was learnt, so agreement is not between two constant outputs
    assert np.mean(k_int == enc.intents) >= 0.9, np.mean(k_int == enc.intents)
    assert len(set(t_int.tolist())) == 3


def test_tflite_has_only_int8_builtin_ops_after_the_projection(exported):
    rows = _op_table(exported["buf"])
    names = [r[1] for r in rows]
    assert rows[0][:2] == (0, "OndeviceProjection")
    assert names.count("OndeviceProjection") == 1
    assert not [n for n in names if n.startswith("Flex") or n == "CUSTOM"]
    assert "WHILE" not in names  # the default scan is the log-depth parallel one
    compute = {"FULLY_CONNECTED", "CONV_2D", "MUL", "ADD", "SUB", "TANH", "LOGISTIC", "PADV2",
               "PAD", "SOFTMAX", "BATCH_MATMUL", "REVERSE_V2"}
    float_compute = [(n, t) for _, n, t, _ in rows if n in compute and t != "INT8"]
    assert not float_compute, float_compute
    assert {"TANH", "LOGISTIC", "PADV2", "REVERSE_V2"} <= set(names)
    # sigmoid and tanh outputs on their fixed int8 ranges [0, 1) and [-1, 1)
    assert {q for _, n, _, q in rows if n == "LOGISTIC"} == {(1 / 256, -128)}
    assert {q for _, n, _, q in rows if n == "TANH"} == {(1 / 128, 0)}


@pytest.mark.skipif(not os.environ.get("ONDEVICE_NLP_SLOW"), reason="set ONDEVICE_NLP_SLOW=1")
@pytest.mark.parametrize("name,lo,hi", [("1mb", 1.0e6, 1.15e6), ("2mb", 1.9e6, 2.2e6)])
def test_named_size_tflite_bytes(name, lo, hi):
    """Untrained static model with MTOP heads, QAT-wrapped and exported (about 40 s each)."""
    from ondevice_nlp import train as T
    from ondevice_nlp.export import convert_int8

    size = P.QRNN_SIZES[name]
    proj = size.projection
    m = P.build_pqrnn(size.net, max_tokens=proj.max_tokens, feature_size=proj.feature_size,
                      window=0, num_intents=117, num_tags=157)
    qat = T.quantize_aware(P.annotate_for_qat(m))
    texts = [f"set an alarm for {h} am and call mom".encode() for h in range(20)]
    labels = {"intents": [str(i) for i in range(117)], "tags": [str(i) for i in range(157)]}
    assert lo <= len(convert_int8(qat, proj, texts, {"labels": labels})) <= hi


def test_qat_weights_reload_into_a_fresh_qat_model(exported, tmp_path):
    """The checkpoint flow of `build`: QAT weights saved, reloaded into a newly built QAT model."""
    from ondevice_nlp import train as T

    qat, labels = exported["qat"], exported["labels"]
    size = P.QRNN_SIZES["tiny"]
    sta = P.build_pqrnn(size.net, max_tokens=16, feature_size=64, window=0,
                        num_intents=len(labels.intents), num_tags=len(labels.tags))
    rng = np.random.default_rng(0)
    x = {"features": rng.integers(-1, 2, (3, 16, 64)).astype("float32"),
         "mask": (np.arange(16)[None] < np.array([[4], [16], [9]])).astype("float32")}
    path = str(tmp_path / "qat.weights.h5")
    qat.save_weights(path)
    again = T.quantize_aware(P.annotate_for_qat(sta))
    again.load_weights(path)
    for a, b in zip(qat(x, training=False), again(x, training=False)):
        assert np.abs(a.numpy()).max() > 0.1
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
