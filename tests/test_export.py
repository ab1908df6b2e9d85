"""The converter's representative dataset: what the int8 calibrator sees must be the text we give."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from ondevice_nlp import ops
from ondevice_nlp.export import int8_converter, representative_dataset
from ondevice_nlp.projection_ref import ProjectionConfig

TEXTS = ["set an alarm for six thirty", "what is the weather in New York tomorrow morning",
         "hi", "send a message to Bob", "ตั้งปลุก 7 โมง", "मौसम कैसा है दिल्ली में आज",
         "réveille-moi à sept heures et demie demain matin s'il te plaît"]


def _calibrated_range(fn, texts):
    """(min, max) the int8 calibrator recorded for ``fn``'s single output over ``texts``
    (a calibration-only conversion with the converter ``export.convert_int8`` uses)."""
    from ai_edge_litert import schema_py_generated as schema

    conv = int8_converter(fn.get_concrete_function(), texts)
    conv._experimental_calibrate_only = True  # noqa: SLF001
    model = schema.ModelT.InitFromPackedBuf(bytearray(conv.convert()), 0)
    g = model.subgraphs[0]
    (out,) = g.outputs
    q = g.tensors[out].quantization
    return float(q.min[0]), float(q.max[0])


@pytest.mark.parametrize("method", ["ternary", "minhash"])
def test_calibrator_sees_the_representative_texts(method):
    """Token counts and a feature checksum recorded by the calibrator equal TF's on the same
    texts. With dtype=object arrays (the old export) the recorded counts were 2-4 where the
    texts have 1-15 tokens, different in each process."""
    proj = ProjectionConfig(method, 64, 8, 0 if method == "ternary" else 1, 16, 0)
    cfg = tf.constant(proj.to_vector())
    weights = tf.constant(np.random.default_rng(0).normal(size=(1, 16, proj.feature_size * (
        2 * proj.window + 1))).astype("float32"))
    texts = [t.encode() for t in TEXTS]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def count(text):
        return tf.reduce_sum(ops.projection(text, cfg)[1], 1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def checksum(text):
        return tf.reduce_sum(ops.projection(text, cfg)[0] * weights, [1, 2])

    for fn in (count, checksum):
        want = np.concatenate([fn(tf.constant([t])).numpy() for t in texts])
        got = _calibrated_range(fn, texts)
        np.testing.assert_allclose(got, (want.min(), want.max()), rtol=1e-5, atol=1e-5,
                                   err_msg=fn.__name__)
    assert want.min() < 0 < want.max()  # the checksum is not trivially constant


def test_representative_dataset_yields_fixed_width_bytes():
    gen = representative_dataset([b"a b", "ü".encode(), b""])
    got = list(gen())
    assert [x[0].dtype.kind for x in got] == ["S", "S", "S"]
    assert [x[0].tolist() for x in got] == [[b"a b"], ["ü".encode()], [b""]]
    assert len(list(gen())) == 3  # callable again (the converter may iterate twice)
    with pytest.raises(TypeError, match="representative text 1 must be bytes"):
        representative_dataset([b"x", "y"])
