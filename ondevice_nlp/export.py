"""Export a (QAT) Keras model to a self-contained int8 ``.tflite`` and evaluate it.

The exported graph is ``text string [B] -> OndeviceProjection (custom op, float
output) -> QUANTIZE -> int8 builtin ops -> outputs``; see ``tflite_model`` for
the signature. Conversion follows the TFLite full-integer recipe
(``Optimize.DEFAULT`` + ``TFLITE_BUILTINS_INT8`` + a representative dataset of
raw training utterances), with our TFLite kernel registered in the converter's
calibrator so calibration runs the real projection. Ranges of layers trained
with QAT come from their fake-quant nodes.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import tensorflow as tf

from . import ops
from .data.example import Example
from .metrics import evaluate
from .projection_ref import ProjectionConfig
from .tflite_model import TFLiteModel, add_metadata, write_atomic

log = logging.getLogger(__name__)


def serving_function(model, proj: ProjectionConfig,
                     batch_size: int | None = None) -> tf.types.experimental.ConcreteFunction:
    """Concrete function text string [B] -> dict of outputs (see ``tflite_model``).

    ``batch_size``: a fixed B (TFLite fuses Keras LSTMs only at a fixed batch;
    ``TFLiteModel`` then runs longer batches in pieces), or None for any B.
    """
    cfg_vec = tf.constant(proj.to_vector())

    @tf.function(input_signature=[tf.TensorSpec([batch_size], tf.string, name="text")])
    def serve(text):
        feats, mask, offsets = ops.projection(text, cfg_vec)
        intent_logits, slot_logits = model({"features": feats, "mask": mask}, training=False)
        return {
            "intent_probs": tf.nn.softmax(intent_logits),
            "slot_tags": tf.argmax(slot_logits, axis=-1, output_type=tf.int32),
            "slot_logits": tf.identity(slot_logits),
            "token_offsets": offsets,
            "token_mask": mask,
        }

    return serve.get_concrete_function()


def convert_int8(model, proj: ProjectionConfig, representative_texts: Sequence[bytes],
                 metadata: dict, batch_size: int | None = None) -> bytes:
    """Convert to an int8 full-integer ``.tflite`` (bytes) with ``metadata`` embedded.

    ``batch_size``: None (any batch) or 1, a fixed batch (see ``serving_function``).
    A fixed batch above 1 is refused: the converter's int8 calibrator fills
    only the first string of a string input batch (TF 2.21; our op then
    reports "string buffer holds 1 strings but the tensor shape says B").

    Raises:
      RuntimeError: the converter failed (its message is kept).
      ValueError: ``batch_size`` is neither None nor 1.
    """
    if batch_size not in (None, 1):
        raise ValueError(f"batch_size must be None (any batch) or 1, got {batch_size!r}: the "
                         "TFLite int8 calibrator cannot feed a fixed string batch above 1")
    fn = serving_function(model, proj, batch_size)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    conv.allow_custom_ops = True
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.target_spec._experimental_custom_op_registerers = [ops.tflite_registerer]  # noqa: SLF001

    def rep():
        for t in representative_texts:
            yield [np.array([t], dtype=object)]

    conv.representative_dataset = rep
    try:
        buf = conv.convert()
    except Exception as e:  # the converter raises ConverterError and friends
        raise RuntimeError(f"TFLite conversion failed: {e}") from e
    return add_metadata(buf, metadata)


def export(model, proj: ProjectionConfig, representative_texts, metadata: dict, path: str,
           batch_size: int | None = None) -> int:
    """Convert and write ``path`` atomically; returns the file size in bytes.

    ``batch_size``: fixed input batch or None (see ``serving_function``).
    """
    buf = convert_int8(model, proj, representative_texts, metadata, batch_size)
    write_atomic(path, buf)
    return len(buf)


def evaluate_tflite(tfl: TFLiteModel, examples: Sequence[Example], batch_size: int = 64) -> dict:
    """Intent accuracy, slot F1 and exact match of a ``.tflite`` on examples.

    Predictions come from the file alone: its slot logits (constrained IOB2
    Viterbi decoding) and token offsets (``TFLiteModel.decode_batch``), batches
    of ``batch_size`` utterances.
    """
    intents, slots = [], []
    for i in range(0, len(examples), batch_size):
        for intent, _, spans in tfl.decode_batch([e.text for e in examples[i:i + batch_size]]):
            intents.append(intent)
            slots.append(spans)
    return evaluate(list(examples), intents, slots)
