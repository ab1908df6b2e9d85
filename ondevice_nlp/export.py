"""Export a (QAT) Keras model to a self-contained int8 ``.tflite`` and evaluate it.

The exported graph is ``text string [B] -> OndeviceProjection (custom op, float
output) -> QUANTIZE -> int8 builtin ops -> outputs``; see ``tflite_model`` for
the signature. Conversion follows the TFLite full-integer recipe
(``Optimize.DEFAULT`` + ``TFLITE_BUILTINS_INT8`` + a representative dataset of
raw training utterances, see ``int8_converter``), with our TFLite kernel
registered in the converter's calibrator so calibration runs the real projection. Ranges of layers trained
with QAT come from their fake-quant nodes.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from . import ops
from .data.example import Example
from .metrics import error_breakdown, evaluate
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


def representative_dataset(texts: Sequence[bytes]) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The converter's ``representative_dataset`` for a model with one string input:
    each call yields, per text, ``[array of shape [1], dtype S]`` (numpy fixed-width bytes).

    Not ``dtype=object``: with TF 2.21 an object array of bytes reaches the
    calibrator's string tensor corrupted. A calibration-only conversion of
    "token count of the projection" over 5-7-word utterances records counts of
    1-4 instead of 5-7, different in every process, so every converter-calibrated
    int8 range came from garbage text and changed from one export to the next
    (``tests/test_export.py`` pins this). Fixed-width bytes arrive intact. numpy
    drops trailing NUL bytes of fixed-width strings, which only shortens such a
    calibration text.

    Raises:
      TypeError: a text is not ``bytes``.
    """
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, bytes):
            raise TypeError(f"representative text {i} must be bytes, got {type(t).__name__}")

    def gen():
        for t in texts:
            yield [np.array([t], dtype=np.bytes_)]

    return gen


def int8_converter(fn: tf.types.experimental.ConcreteFunction,
                   representative_texts: Sequence[bytes],
                   trackable=None) -> tf.lite.TFLiteConverter:
    """A TFLite converter for int8 full-integer conversion of ``fn`` (one string input):
    ``Optimize.DEFAULT``, ``TFLITE_BUILTINS_INT8``, custom ops allowed, our TFLite
    kernel registered in the calibrator, and ``representative_dataset(representative_texts)``.
    ``trackable``: the object holding ``fn``'s variables (a Keras model), if any.

    Raises:
      TypeError: a representative text is not ``bytes``.
    """
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], trackable)
    conv.allow_custom_ops = True
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.target_spec._experimental_custom_op_registerers = [ops.tflite_registerer]  # noqa: SLF001
    conv.representative_dataset = representative_dataset(representative_texts)
    return conv


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
    conv = int8_converter(serving_function(model, proj, batch_size), representative_texts, model)
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


def evaluate_tflite(tfl: TFLiteModel, examples: Sequence[Example], batch_size: int = 64,
                    errors: bool = False) -> dict:
    """Intent accuracy, slot F1 and exact match of a ``.tflite`` on examples.

    Predictions come from the file alone: its slot logits (constrained IOB2
    Viterbi decoding) and token offsets (``TFLiteModel.decode_batch``), batches
    of ``batch_size`` utterances. With ``errors``, the result also has
    ``"errors"``: the counts of ``metrics.error_breakdown``; and, when the
    file's metadata gives its sequence length S (``projection.max_tokens``),
    ``"truncation"``: the counts of :func:`truncation_counts` (with a word
    dictionary, the tokens follow the words of the file's config vector,
    ``TFLiteModel.projection_config``).

    Raises:
      ModelFileError: with ``errors``, a file whose metadata gives a word dictionary
        but whose projection op has none or describes another projection.
    """
    intents, slots = [], []
    for i in range(0, len(examples), batch_size):
        for intent, _, spans in tfl.decode_batch([e.text for e in examples[i:i + batch_size]]):
            intents.append(intent)
            slots.append(spans)
    result = evaluate(list(examples), intents, slots)
    if errors:
        result["errors"] = error_breakdown(list(examples), intents, slots)
        meta_proj = tfl.meta.get("projection") or {}
        S = meta_proj.get("max_tokens")
        if isinstance(S, int) and S > 0:
            proj = tfl.projection_config() if meta_proj.get("words") else None
            result["truncation"] = truncation_counts(list(examples), intents, slots, S, proj)
    return result


def truncation_counts(gold: Sequence[Example], pred_intents: Sequence[str], pred_slots: Sequence,
                      max_tokens: int, proj: ProjectionConfig | None = None) -> dict:
    """What the sequence length S costs: the utterances with more than ``max_tokens`` projection
    tokens (the model sees the first S only, ``projection_ref.tokenize``), how many of them are
    still exact matches, and the gold slots that end after the S-th token, which no model of
    that S can find.

    Args:
        gold, pred_intents, pred_slots: as for :func:`metrics.evaluate`.
        max_tokens: the model's S (``meta["projection"]["max_tokens"]``), > 0.
        proj: the model's ``ProjectionConfig`` when it has a word dictionary (its tokens
            are then words, ``train.token_char_offsets``); None: letters.

    Returns:
        ``{"max_tokens": S, "too_long": int, "too_long_exact_match": int,
        "gold_slots_past_cap": int}`` (counts of utterances, utterances, gold slots).

    Raises:
        ValueError: ``max_tokens`` < 1; as :func:`metrics.evaluate` (empty gold,
        lengths differ).
    """
    from .metrics import _check_lengths
    from .train import token_char_offsets

    _check_lengths(gold, pred_intents, pred_slots, "count truncation on")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    out = {"max_tokens": max_tokens, "too_long": 0, "too_long_exact_match": 0,
           "gold_slots_past_cap": 0}
    idx = []
    for i, e in enumerate(gold):
        offsets = token_char_offsets(e.text, max_tokens + 1, proj)
        if len(offsets) > max_tokens:
            idx.append(i)
            last_end = offsets[max_tokens - 1][1]
            out["gold_slots_past_cap"] += sum(s.end > last_end for s in e.slots)
    out["too_long"] = len(idx)
    if idx:
        sub = evaluate([gold[i] for i in idx], [pred_intents[i] for i in idx],
                       [pred_slots[i] for i in idx])
        out["too_long_exact_match"] = round(sub["exact_match"] * sub["n"])
    return out
