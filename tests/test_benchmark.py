"""`ondevice-nlp benchmark`: graph statistics, latency sanity, comparison mode, errors.

Latency figures are printed by the tool, never asserted against a time budget here:
the tests only check their internal consistency (positive, ordered percentiles).
"""

import json
import os

import numpy as np
import pytest

from ondevice_nlp import benchmark as B
from ondevice_nlp import cli
from ondevice_nlp.projection_ref import ProjectionConfig


# ---------------------------------------------------------------------------
# A hand-built float graph whose MACs and parameters are counted by hand:
#   x [1,4,8,2] -> CONV_2D (3 filters 1x3, SAME)      -> [1,4,8,3]   MACs 96*1*3*2 = 576
#               -> DEPTHWISE_CONV_2D (3x3, SAME)      -> [1,4,8,3]   MACs 96*3*3   = 864
#               -> RESHAPE [1,32,3]
#               -> FULLY_CONNECTED (5 units, keep dims) -> [1,32,5]  MACs 160*3    = 480
#               -> BATCH_MATMUL with constant [1,5,2]   -> [1,32,2]  MACs 64*5     = 320
# MACs = 2240; parameters = 18+3 + 27+3 + 15+5 + 10 = 81 (the int32 shape constant is not one).
# ---------------------------------------------------------------------------
HAND_MACS = 576 + 864 + 480 + 320
HAND_PARAMS = 18 + 3 + 27 + 3 + 15 + 5 + 10


def _hand_model() -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as S

    rng = np.random.default_rng(0)
    m = S.ModelT()
    m.version = 3
    m.buffers = [S.BufferT()]
    tensors = []

    def tensor(name, shape, data=None, ttype=S.TensorType.FLOAT32):
        t = S.TensorT()
        t.name, t.shape, t.type = name.encode(), np.array(shape, np.int32), ttype
        t.buffer = 0
        if data is not None:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            m.buffers.append(b)
            t.buffer = len(m.buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    codes = {}

    def code(builtin):
        if builtin not in codes:
            c = S.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), 1
            codes[builtin] = len(codes)
            m.operatorCodes = (m.operatorCodes or []) + [c]
        return codes[builtin]

    ops = []

    def op(builtin, ins, outs, opt_type, opt):
        o = S.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = code(builtin), ins, outs
        o.builtinOptionsType, o.builtinOptions = opt_type, opt
        ops.append(o)

    x = tensor("x", [1, 4, 8, 2])
    conv_w, conv_b = tensor("conv_w", [3, 1, 3, 2], w(3, 1, 3, 2)), tensor("conv_b", [3], w(3))
    c = tensor("c", [1, 4, 8, 3])
    o = S.Conv2DOptionsT()
    o.padding, o.strideH, o.strideW, o.dilationHFactor, o.dilationWFactor = 0, 1, 1, 1, 1
    op(S.BuiltinOperator.CONV_2D, [x, conv_w, conv_b], [c], S.BuiltinOptions.Conv2DOptions, o)
    dw_w, dw_b = tensor("dw_w", [1, 3, 3, 3], w(1, 3, 3, 3)), tensor("dw_b", [3], w(3))
    d = tensor("d", [1, 4, 8, 3])
    o = S.DepthwiseConv2DOptionsT()
    o.padding, o.strideH, o.strideW, o.depthMultiplier = 0, 1, 1, 1
    o.dilationHFactor, o.dilationWFactor = 1, 1
    op(S.BuiltinOperator.DEPTHWISE_CONV_2D, [c, dw_w, dw_b], [d],
       S.BuiltinOptions.DepthwiseConv2DOptions, o)
    shape = tensor("shape", [3], np.array([1, 32, 3], np.int32), S.TensorType.INT32)
    r = tensor("r", [1, 32, 3])
    o = S.ReshapeOptionsT()
    o.newShape = [1, 32, 3]
    op(S.BuiltinOperator.RESHAPE, [d, shape], [r], S.BuiltinOptions.ReshapeOptions, o)
    fc_w, fc_b = tensor("fc_w", [5, 3], w(5, 3)), tensor("fc_b", [5], w(5))
    f = tensor("f", [1, 32, 5])
    o = S.FullyConnectedOptionsT()
    o.keepNumDims = True
    op(S.BuiltinOperator.FULLY_CONNECTED, [r, fc_w, fc_b], [f],
       S.BuiltinOptions.FullyConnectedOptions, o)
    bm_w = tensor("bm_w", [1, 5, 2], w(1, 5, 2))
    g = tensor("g", [1, 32, 2])
    op(S.BuiltinOperator.BATCH_MATMUL, [f, bm_w], [g], S.BuiltinOptions.BatchMatMulOptions,
       S.BatchMatMulOptionsT())
    sg = S.SubGraphT()
    sg.tensors, sg.operators, sg.inputs, sg.outputs = tensors, ops, [x], [g]
    m.subgraphs = [sg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def hand_model(tmp_path_factory):
    p = tmp_path_factory.mktemp("hand") / "hand.tflite"
    p.write_bytes(_hand_model())
    return p


@pytest.fixture(scope="module")
def proj_model(tmp_path_factory):
    """A small string-input model: projection op -> dense layers (float, converted by TF)."""
    import tensorflow as tf

    from ondevice_nlp import ops

    cfg = ProjectionConfig("minhash", 64, 16, 0, 16, 0)
    rng = np.random.default_rng(1)
    w1 = tf.constant(rng.standard_normal((64, 32)).astype(np.float32))
    w2 = tf.constant(rng.standard_normal((32, 5)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(text):
        feats, mask, offsets = ops.projection(text, cfg)
        h = tf.nn.relu(tf.einsum("bsf,fh->bsh", feats, w1))
        return {"logits": tf.einsum("bsh,hk->bsk", h, w2) * mask[..., None],
                "token_offsets": offsets}

    conv = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    conv.allow_custom_ops = True
    p = tmp_path_factory.mktemp("proj") / "proj.tflite"
    p.write_bytes(conv.convert())
    return p


def test_hand_counted_macs_and_parameters(hand_model):
    info = B.analyze(str(hand_model))
    assert info.stats["macs"] == HAND_MACS
    assert info.stats["macs_by_op"] == {"CONV_2D": 576, "DEPTHWISE_CONV_2D": 864,
                                        "FULLY_CONNECTED": 480, "BATCH_MATMUL": 320}
    assert info.stats["parameters"] == HAND_PARAMS
    assert info.stats["parameters_source"] == "graph"
    assert info.stats["bytes"] == os.path.getsize(hand_model)
    assert not info.stats["has_projection"]


def _check_model_json(m, path, threads):
    assert m["bytes"] == os.path.getsize(path)
    assert m["macs"] > 0 and m["parameters"] > 0
    assert set(m["latency_ms"]) == {str(t) for t in threads}
    for lat in m["latency_ms"].values():
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
        assert lat["n"] == 30


def test_benchmark_json_on_projection_model(proj_model, capsys):
    rc = cli.main(["benchmark", str(proj_model), "--threads", "1,2", "--runs", "30",
                   "--warmup", "3", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    (m,) = res["models"]
    _check_model_json(m, proj_model, (1, 2))
    # S=16 tokens x (64x32 + 32x5) weights, whatever op the converter chose
    assert m["macs"] == 16 * (64 * 32 + 32 * 5)
    assert m["constant_elements"] == 64 * 32 + 32 * 5
    assert m["has_projection"] and m["ops"]["CUSTOM:OndeviceProjection"] == 1
    share = m["projection"]["share"]
    assert set(share) == {"1", "2"} and all(0 < s < 5 for s in share.values())
    mem = m["memory"]
    assert mem["rss_before_load"] > 0 and mem["rss_after_load"] >= mem["rss_before_load"]
    assert mem["peak_rss"] >= mem["rss_after_load"]


def test_projection_slice_gives_the_same_features(proj_model):
    """The sliced projection-only model computes exactly the op's outputs."""
    from ondevice_nlp.projection_ref import project

    info = B.analyze(str(proj_model))
    r = B.Runner(B.projection_submodel(info.model), 1, "slice")
    text = "ตั้งปลุกตอนหกโมงเช้า wake me up 😅"
    r.run(r.feeds(text))
    outs = r.output_values()
    ref_feats, ref_mask, ref_offsets = project([text.encode()],
                                               ProjectionConfig("minhash", 64, 16, 0, 16, 0))
    by_shape = {o.shape: o for o in outs}
    np.testing.assert_array_equal(by_shape[ref_feats.shape], ref_feats)
    np.testing.assert_array_equal(by_shape[ref_offsets.shape], ref_offsets)


def test_comparison_mode_two_models(proj_model, hand_model, capsys, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("hello there\n\nकल सुबह 6 बजे\nพรุ่งนี้ฝนจะตกไหม\n", encoding="utf-8")
    rc = cli.main(["benchmark", str(proj_model), str(hand_model), "--threads", "1",
                   "--runs", "30", "--warmup", "2", "--texts", str(texts), "--json",
                   "--no-memory"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["settings"]["interleaved"] and res["settings"]["texts"] == 3
    a, b = res["models"]
    _check_model_json(a, proj_model, (1,))
    _check_model_json(b, hand_model, (1,))
    ra, rb = res["ratios"]
    assert ra["bytes"] == 1.0 and ra["latency_p50"]["1"] == 1.0
    assert rb["macs"] == pytest.approx(HAND_MACS / a["macs"])
    assert rb["latency_p50"]["1"] == pytest.approx(b["latency_ms"]["1"]["p50"]
                                                   / a["latency_ms"]["1"]["p50"])
    # the table form prints one row per model
    rc = cli.main(["benchmark", str(proj_model), str(hand_model), "--threads", "1",
                   "--runs", "5", "--warmup", "0", "--no-memory", "--markdown"])
    out = capsys.readouterr().out
    assert rc == 0 and "proj.tflite" in out and "hand.tflite" in out and "(x1.00)" in out


def test_op_resolver_option(proj_model, capsys):
    """--op-resolver reaches the timed runs and the memory subprocess; a bad name is an error."""
    rc = cli.main(["benchmark", str(proj_model), "--threads", "1", "--runs", "3", "--warmup", "0",
                   "--op-resolver", "reference", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["settings"]["op_resolver"] == "reference"
    (m,) = res["models"]
    assert m["latency_ms"]["1"]["n"] == 3 and m["memory"]["peak_rss"] > 0
    with pytest.raises(B.BenchmarkError, match="op_resolver must be one of"):
        B.benchmark([str(proj_model)], op_resolver="BUILTIN_REF", memory=False)
    with pytest.raises(SystemExit):
        cli.main(["benchmark", str(proj_model), "--op-resolver", "ruy"])


def test_dataset_utterances(proj_model, tmp_path, capsys):
    from test_pipeline import _line, write_mtop

    write_mtop(tmp_path, {"test": [_line(f"set an alarm for {h} am", "CREATE_ALARM",
                                         [("DATE_TIME", f"for {h} am")]) for h in range(1, 6)]})
    rc = cli.main(["benchmark", str(proj_model), "--dataset", "mtop", "--data-dir", str(tmp_path),
                   "--languages", "en", "--split", "test", "--runs", "4", "--warmup", "1",
                   "--threads", "1", "--no-memory", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["settings"]["texts"] == 4  # 5 utterances sampled down to --runs
    assert cli.main(["benchmark", str(proj_model), "--dataset", "mtop", "--data-dir",
                     str(tmp_path / "missing"), "--no-memory"]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a flatbuffer", b"\x00" * 64])
def test_corrupt_model_is_a_clear_error(tmp_path, capsys, content):
    p = tmp_path / "broken.tflite"
    p.write_bytes(content)
    assert cli.main(["benchmark", str(p), "--runs", "2", "--no-memory"]) == 2
    err = capsys.readouterr().err
    assert "broken.tflite" in err and "error" in err


def test_truncated_model_is_a_clear_error(proj_model, tmp_path, capsys):
    buf = proj_model.read_bytes()
    for cut in (len(buf) // 2, 100):
        p = tmp_path / f"cut{cut}.tflite"
        p.write_bytes(buf[:cut])
        assert cli.main(["benchmark", str(p), "--runs", "2", "--no-memory"]) == 2
        assert p.name in capsys.readouterr().err


def test_bad_texts_file_and_options(proj_model, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n\xff\xfe broken\n")
    assert cli.main(["benchmark", str(proj_model), "--texts", str(bad), "--no-memory"]) == 2
    assert "bad.txt:2" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    assert cli.main(["benchmark", str(proj_model), "--texts", str(empty)]) == 2
    assert "no utterances" in capsys.readouterr().err
    assert cli.main(["benchmark", str(tmp_path / "missing.tflite")]) == 2
    assert "missing.tflite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["benchmark", str(proj_model), "--threads", "0"])


def test_token_ids_and_sampling():
    ids, mask = B.token_ids("Play some Jazz", 6)
    assert ids.dtype == np.int32 and list(mask) == [1, 1, 1, 0, 0, 0]
    assert ids[0] == B.token_ids("play", 2)[0][0] and (ids[:3] >= 1).all() and (ids[:3] <= 1000).all()
    assert B.sample_texts(list("abcdefghij"), 3) == ["a", "e", "j"]  # linspace(0, 9, 3), rounded
    assert B.sample_texts(["x", "y"], 5) == ["x", "y"]
