"""pQRNN (Kaliamoorthi et al. 2021, arXiv 2101.08890) in tf.keras (Keras 2, for tfmot QAT).

Like ``pnlp_mixer``, the model takes the projection's output, not text: the
ternary hashing projection (``ProjectionConfig`` method ``"ternary"``, window
0) runs in the input pipeline during training and as the custom op in front of
the exported ``.tflite``.

Architecture (reference-notes "pQRNN encoder"; QRNN: Bradbury et al. 2017,
arXiv 1611.01576):

* bottleneck: ``Dense(F -> B)``, ``LayerNormalization``, ReLU. The reference
  uses batch norm; its moving statistics are awkward under tfmot QAT, so this
  port uses LayerNorm (``bottleneck_norm=False`` drops it: Dense + ReLU);
* ``num_layers`` bidirectional QRNN layers. Each is one width-``k`` ``Conv1D``
  (``padding="same"``) producing, for both directions at once, the
  pre-activations of z (tanh), f (sigmoid) and o (sigmoid), then
  ``QRNNPooling``: fo-pooling ``c_t = f_t c_{t-1} + (1 - f_t) z_t``,
  ``h_t = o_t c_t`` left to right (forward) and right to left (backward),
  concatenated to 2H channels;
* heads: per-token ``Dense`` slot-tag logits; intent by attention pooling
  (softmax over tokens of a 1-unit projection, padding pushed down by a
  ``-POOL_MASK_BIAS`` logit, times an optional value projection, summed) then
  ``Dense``.

Padding never influences real positions: the input of every QRNN layer is
zero at padding (the first layer's by an explicit ``Multiply`` with the mask,
the others because ``QRNNPooling`` zeroes its output there), and at padding
the pooling forces ``f = 1`` (the input gate ``1 - f`` is multiplied by the
mask), so the backward direction enters the last real token with ``c = 0``.
Hence a batch cut to its longest utterance (``max_tokens=None``) and the same
batch padded to S give the same outputs on real tokens (up to the padding's
``exp(-POOL_MASK_BIAS)`` share of the intent softmax, about 1e-7 per pad).

Zoneout (Krueger et al. 2017, as the QRNN paper applies it): in training each
state unit keeps its previous value with probability p, i.e. the input gate
``1 - f`` is multiplied by a Bernoulli(1 - p) mask (no rescaling); at
inference it is multiplied by its expectation ``1 - p``.

The recurrence as builtin TFLite ops. fo-pooling is the first-order linear
recurrence ``c_t = a_t c_{t-1} + b_t`` with ``a = 1 - g``, ``b = g z``,
``g = mask (1 - f)``. Three implementations (``QRNNConfig.scan``), all
exported with ``export.convert_int8`` and run in ai-edge-litert
(``tools/pqrnn_scan_bench.py``; figures below):

* ``"parallel"`` (default): a log-depth prefix scan (Hillis & Steele 1986; for
  linear recurrences Blelloch 1990, "Prefix sums and their applications",
  Sec. 1.4): for d = 1, 2, 4, ... < S, ``b <- a * shift(b, d) + b``,
  ``a <- a * shift(a, d)`` with ``shift`` padding by the identity (a = 1,
  b = 0). ceil(log2 S) levels of whole-tensor PADV2 / STRIDED_SLICE / MUL /
  ADD; the backward direction is time-reversed once (REVERSE_V2) so both
  directions share one scan. With a dynamic S (training) the levels run in a
  ``tf.while_loop``; the extra levels a static S adds are exact identities.
* ``"unroll"``: a sequential loop unrolled over the S static steps (UNPACK,
  then one MUL + ADD per step, PACK).
* ``"while"``: a sequential ``tf.while_loop`` over the S steps (TFLite WHILE
  with a GATHER / SCATTER_ND body).

Measured with ``tools/pqrnn_scan_bench.py`` on this project's 2-core CPU
machine, size "1mb" with MTOP's 117 intents and 157 tags, S = 64, untrained
weights, QAT-wrapped, int8 ``.tflite`` from ``convert_int8``; latency =
median wall ms of ai-edge-litert ``TFLiteModel.run`` (200-300 calls on one
utterance, 30 on a batch of 32), 1 thread, projection op included. The
machine was running training jobs at the same time, so latencies are noisy.
Run 1 timed the files one after another (and had an extra zoneout MUL, 1 KB
larger); run 2 (bytes, ops below) timed them round-robin under heavier load:

=========  ===========  ===  ====================  ====================
scan       bytes        ops  batch 1 ms run1/run2  batch 32 ms run1/run2
=========  ===========  ===  ====================  ====================
parallel   1,071,208    188  5.7 / 11.0            158 / 413
unroll     1,686,424    368  8.0 / 11.7            142 / 460
while      1,073,848    180  10.9 / 30.7           382 / 1506
=========  ===========  ===  ====================  ====================

The unrolled scan adds 0.6 MB (368 operators against 188) and the while
loop is 2-4x slower (S sequential steps in the interpreter; TFLite keeps its
loop-carried state in float32, with QUANTIZE/DEQUANTIZE in the body); the
parallel scan is the smallest and, on batch 1, the fastest, so it is the
default (``QRNNConfig.scan``). Size "2mb": 2,068,616 bytes (parallel).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tf_keras as keras

from ..projection_ref import ProjectionConfig
from . import ModelSize, copy_by_name
from .baselines import FillPaddingWithFirst

L = keras.layers

POOL_MASK_BIAS = 16.0  # logit penalty of padding tokens in attention pooling (exp(-16) ~ 1e-7)
SCANS = ("parallel", "unroll", "while")


@dataclasses.dataclass(frozen=True)
class QRNNConfig:
    """Size and regularisation of a pQRNN; the projection sizes live in ProjectionConfig.

    Attributes:
      bottleneck: B, width of the dense bottleneck after the projection.
      state: H, QRNN state size per direction (layer outputs are 2H wide).
      num_layers: L, bidirectional QRNN layers.
      kernel_width: k, width of the gate convolutions (odd).
      zoneout: p, probability that a state unit keeps its previous value (training).
      dropout: dropout between QRNN layers, before the slot head and on the
        pooled vector (training only).
      feature_dropout: dropout on the projection features (training only).
      pool_value: width of the value projection of attention pooling; 0 pools
        the QRNN states directly (2H wide).
      bottleneck_norm: LayerNormalization after the bottleneck Dense.
      scan: fo-pooling implementation of the static (``max_tokens=S``) model,
        one of ``SCANS`` (see the module docstring); the dynamic model always
        uses ``"parallel"``.
    """

    bottleneck: int = 128
    state: int = 128
    num_layers: int = 2
    kernel_width: int = 3
    zoneout: float = 0.1
    dropout: float = 0.1
    feature_dropout: float = 0.0
    pool_value: int = 0
    bottleneck_norm: bool = True
    scan: str = "parallel"

    def __post_init__(self):
        for name in ("bottleneck", "state", "num_layers", "kernel_width"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"QRNNConfig.{name} must be a positive int, got {v!r}")
        if self.kernel_width % 2 == 0:
            raise ValueError(f"QRNNConfig.kernel_width must be odd, got {self.kernel_width}")
        for name in ("zoneout", "dropout", "feature_dropout"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"QRNNConfig.{name} must be in [0, 1), got {v!r}")
        if not isinstance(self.pool_value, int) or self.pool_value < 0:
            raise ValueError(f"QRNNConfig.pool_value must be an int >= 0, got {self.pool_value!r}")
        if self.scan not in SCANS:
            raise ValueError(f"QRNNConfig.scan must be one of {SCANS}, got {self.scan!r}")


QRNN_SIZES = {
    # About 1 MB int8 with MTOP's 117 intents and 157 BIO tags (figures in the README / report):
    # the reference-notes formula's F=512, B=H=128, L=2 (~1.0 M parameters).
    "1mb": ModelSize(ProjectionConfig("ternary", 512, 1, 0, 64, 0), 0,
                    QRNNConfig(bottleneck=128, state=128, num_layers=2)),
    # About 2 MB int8, the size of the pQRNN the pNLP-Mixer paper compares with.
    "2mb": ModelSize(ProjectionConfig("ternary", 1024, 1, 0, 64, 0), 0,
                    QRNNConfig(bottleneck=192, state=176, num_layers=2)),
    # Teacher for distillation (``ondevice-nlp teacher``), float only: ~15 M parameters
    # (F=1024, B=512, H=384, 3 layers).
    "teacher": ModelSize(ProjectionConfig("ternary", 1024, 1, 0, 64, 0), 0,
                        QRNNConfig(bottleneck=512, state=384, num_layers=3, dropout=0.2)),
    # A few steps of training only: for tests.
    "tiny": ModelSize(ProjectionConfig("ternary", 64, 1, 0, 16, 0), 0,
                     QRNNConfig(bottleneck=16, state=8, num_layers=2, zoneout=0.1, dropout=0.0)),
}


# --------------------------------------------------------------------------- the recurrence


def _shift(x: tf.Tensor, d, fill: float) -> tf.Tensor:
    """x [B, S, C] moved d steps later along axis 1, the first d steps set to ``fill``."""
    S = x.shape[1]
    if S is None:
        S = tf.shape(x)[1]
    return tf.pad(x, [[0, 0], [d, 0], [0, 0]], constant_values=fill)[:, :S]


def _scan_parallel(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """c [B, S, C] with ``c_t = a_t c_{t-1} + b_t``, ``c_{-1} = 0``: log-depth prefix scan.

    After the level with shift d, (a_t, b_t) compose the steps t-2d+1..t, so
    ceil(log2 S) levels give ``c_t = b_t``. Static S: unrolled levels (the last
    skips the unused update of a); dynamic S: a ``tf.while_loop`` over levels.
    """
    S = a.shape[1]
    if S is not None:
        d = 1
        while d < S:
            b = a * _shift(b, d, 0.0) + b
            if 2 * d < S:
                a = a * _shift(a, d, 1.0)
            d *= 2
        return b

    def body(d, a, b):
        return d * 2, a * _shift(a, d, 1.0), a * _shift(b, d, 0.0) + b

    _, _, b = tf.while_loop(lambda d, a, b: d < tf.shape(a)[1], body, (tf.constant(1), a, b))
    return b


def _scan_unroll(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Same as ``_scan_parallel``: one step per token, unrolled over the static S."""
    if a.shape[1] is None:
        raise ValueError("scan='unroll' needs a static sequence length")
    out, c = [], None
    for a_t, b_t in zip(tf.unstack(a, axis=1), tf.unstack(b, axis=1)):
        c = b_t if c is None else a_t * c + b_t
        out.append(c)
    return tf.stack(out, axis=1)


def _scan_while(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Same as ``_scan_parallel``: one step per token in a ``tf.while_loop``."""
    S = a.shape[1] if a.shape[1] is not None else tf.shape(a)[1]

    def body(t, c, out):
        c = tf.gather(a, t, axis=1) * c + tf.gather(b, t, axis=1)
        out = tf.tensor_scatter_nd_update(
            tf.transpose(out, [1, 0, 2]), tf.reshape(t, [1, 1]), c[None])
        return t + 1, c, tf.transpose(out, [1, 0, 2])

    c0 = tf.zeros_like(b[:, 0])
    _, _, out = tf.while_loop(lambda t, c, out: t < S, body, (tf.constant(0), c0, tf.zeros_like(b)))
    return out


_SCAN_FNS = {"parallel": _scan_parallel, "unroll": _scan_unroll, "while": _scan_while}


def _reverse_backward(x: tf.Tensor, units: int) -> tf.Tensor:
    """x [B, S, 2H]: channels H.. (the backward direction) reversed along time."""
    return tf.concat([x[..., :units], tf.reverse(x[..., units:], axis=[1])], axis=-1)


@keras.utils.register_keras_serializable(package="ondevice_nlp")
class QRNNPooling(L.Layer):
    """Bidirectional fo-pooling of QRNN gate pre-activations (no weights).

    Inputs: ``[gates, mask]``: gates float32 [B, S, 6H], channels
    ``[z_fw, z_bw, f_fw, f_bw, o_fw, o_bw]`` (H each, pre-activation);
    mask float32 [B, S] (1.0 real token, 0.0 padding; real tokens first).
    Output: float32 [B, S, 2H] = ``[h_fw, h_bw]``, zero at padding, with
    ``c_t = f_t c_{t-1} + (1 - f_t) z_t``, ``h_t = o_t c_t``, ``c = 0``
    before the first step of each direction; the backward direction runs from
    the last real token to the first. See the module docstring for zoneout and
    the ``scan`` implementations.
    """

    def __init__(self, units: int, zoneout: float = 0.0, scan: str = "parallel", **kwargs):
        super().__init__(**kwargs)
        if scan not in SCANS:
            raise ValueError(f"scan must be one of {SCANS}, got {scan!r}")
        self.units, self.zoneout, self.scan = int(units), float(zoneout), scan

    def call(self, inputs, training=None):
        gates, mask = inputs
        H = self.units
        if gates.shape[-1] != 6 * H:
            raise ValueError(f"{self.name}: gates must have 6*units={6 * H} channels, "
                             f"got {gates.shape[-1]}")
        m = mask[..., None]                                # [B, S, 1]
        z = tf.tanh(gates[..., :2 * H])
        f = tf.sigmoid(gates[..., 2 * H:4 * H])
        o = tf.sigmoid(gates[..., 4 * H:])
        keep = m                                           # 0 at padding: input gate 0, f = 1
        if self.zoneout:
            p = self.zoneout

            def zoned():
                return m * tf.cast(tf.random.uniform(tf.shape(f)) >= p, f.dtype)

            keep = keras.backend.in_train_phase(zoned, lambda: m * (1.0 - p), training=training)
        g = (1.0 - f) * keep                               # input gate 1 - f
        a = _reverse_backward(1.0 - g, H)
        b = _reverse_backward(g * z, H)
        scan = _SCAN_FNS[self.scan if gates.shape[1] is not None else "parallel"]
        c = _reverse_backward(scan(a, b), H)
        return o * c * m

    def get_config(self):
        return {**super().get_config(), "units": self.units, "zoneout": self.zoneout,
                "scan": self.scan}


# --------------------------------------------------------------------------- the model


def build_pqrnn(cfg: QRNNConfig, *, max_tokens: int | None, feature_size: int, window: int,
                num_intents: int, num_tags: int, name: str = "pqrnn") -> keras.Model:
    """Build the float Keras model.

    Inputs: ``features`` float32 [B, S, F] (ternary projection, window 0) and
    ``mask`` float32 [B, S] (1.0 real token, 0.0 padding, real tokens first).
    Outputs (positional): intent logits float32 [B, num_intents] and slot
    logits float32 [B, S, num_tags].

    ``max_tokens=None`` builds the dynamic-length model (inputs [B, None, F]:
    fast float training on batches cut to their longest utterance);
    ``max_tokens=S`` the static one (QAT, int8 export). Both have the same
    layer names and weight shapes (weights copy by name) and the same outputs
    on real tokens.

    Raises:
      ValueError: ``window != 0`` (the QRNN's gate convolutions see the
        neighbours) or bad sizes.
    """
    if window != 0:
        raise ValueError(f"pQRNN takes the projection with window 0, got window={window}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    S, H = max_tokens, cfg.state
    feats = L.Input((S, feature_size), name="features")
    mask = L.Input((S,), name="mask")
    mask3 = L.Reshape((-1, 1), name="mask_3d")(mask)                 # [B, S, 1]
    x = feats
    if cfg.feature_dropout:
        x = L.Dropout(cfg.feature_dropout, name="feature_dropout")(x)
    x = L.Dense(cfg.bottleneck, name="bottleneck")(x)
    if cfg.bottleneck_norm:
        # padding rows copy the first token's, so the LayerNorm's int8 ranges (variance, 1/std)
        # are set by real tokens only; they are zeroed after the ReLU either way
        x = FillPaddingWithFirst(name="bottleneck_pad_fill")([x, mask3])
        x = L.LayerNormalization(epsilon=1e-5, name="bottleneck_ln")(x)
    x = L.Activation("relu", name="bottleneck_relu")(x)
    x = L.Multiply(name="bottleneck_masked")([x, mask3])            # zero at padding
    for i in range(cfg.num_layers):
        if cfg.dropout and i:
            x = L.Dropout(cfg.dropout, name=f"qrnn{i}_dropout")(x)
        gates = L.Conv1D(6 * H, cfg.kernel_width, padding="same", name=f"qrnn{i}_gates")(x)
        x = QRNNPooling(H, cfg.zoneout, cfg.scan, name=f"qrnn{i}_pool")([gates, mask])
    if cfg.dropout:
        x = L.Dropout(cfg.dropout, name="head_dropout")(x)
    slots = L.Dense(num_tags, name="slots")(x)
    return keras.Model([feats, mask], [_attention_pool(x, mask3, cfg, num_intents), slots],
                       name=name)


def copy_weights(src: keras.Model, dst: keras.Model) -> None:
    """Copy weights layer by layer, matched by name (dynamic <-> static pQRNN).

    Raises:
      ValueError: the models' weighted layers differ in names or weight shapes.
    """
    copy_by_name(src, dst)


def _attention_pool(x, mask3, cfg: QRNNConfig, num_intents: int):
    """Intent logits [B, C] from token states x [B, S, 2H] and mask3 [B, S, 1]."""
    scores = L.Dense(1, name="pool_score")(x)                      # [B, S, 1]
    bias = L.Rescaling(POOL_MASK_BIAS, offset=-POOL_MASK_BIAS, name="pool_mask_bias")(mask3)
    scores = L.Add(name="pool_masked_score")([scores, bias])
    scores = L.Permute((2, 1), name="pool_score_t")(scores)       # [B, 1, S]
    weights = L.Softmax(name="pool_softmax")(scores)
    values = L.Dense(cfg.pool_value, name="pool_value")(x) if cfg.pool_value else x
    pooled = L.Dot(axes=(2, 1), name="pool_sum")([weights, values])  # [B, 1, V]
    pooled = L.Flatten(name="pool_flatten")(pooled)
    if cfg.dropout:
        pooled = L.Dropout(cfg.dropout, name="pool_dropout")(pooled)
    return L.Dense(num_intents, name="intent")(pooled)


# --------------------------------------------------------------------------- QAT


def _output_quantize_config_class():
    """``train.OutputQuantizeConfig`` subclass registered with Keras (so that a
    ``QuantizeAnnotate`` wrapper holding it survives ``from_config`` outside a
    ``quantize_scope``); built on first use to keep tfmot out of model imports."""
    global _OUTPUT_QC
    if _OUTPUT_QC is None:
        from ..train import OutputQuantizeConfig

        _OUTPUT_QC = keras.utils.register_keras_serializable(package="ondevice_nlp")(
            type("PQRNNOutputQuantizeConfig", (OutputQuantizeConfig,), {}))
    return _OUTPUT_QC


_OUTPUT_QC = None


def quantize_annotations() -> dict:
    """{layer class: () -> tfmot QuantizeConfig} for the pQRNN layers tfmot has no rule for.

    ``Multiply`` (masking), ``QRNNPooling`` and ``FillPaddingWithFirst`` get an output-only config
    (``train.OutputQuantizeConfig``: output fake-quantized, 8 bit, EMA range;
    inside the pooling, the converter gives sigmoid/tanh their fixed int8
    ranges and calibrates the scan's tensors on the representative dataset).
    LayerNormalization, Rescaling, Dot and Conv1D are already handled by
    ``train.quantize_aware``.
    """
    qc = _output_quantize_config_class()
    return {QRNNPooling: qc, L.Multiply: qc, FillPaddingWithFirst: qc}


def annotate_for_qat(model: keras.Model) -> keras.Model:
    """Copy of ``model`` with the layers of ``quantize_annotations()`` wrapped in tfmot's
    ``QuantizeAnnotate``, so that ``train.quantize_aware(annotate_for_qat(model))``
    works without changing ``train.py`` (tfmot keeps existing annotations).
    """
    import tensorflow_model_optimization as tfmot

    ann = quantize_annotations()

    def clone_fn(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        factory = ann.get(type(layer))
        if factory is None:
            return fresh
        return tfmot.quantization.keras.quantize_annotate_layer(fresh, factory())

    out = keras.models.clone_model(model, clone_function=clone_fn)
    out.set_weights(model.get_weights())
    return out
