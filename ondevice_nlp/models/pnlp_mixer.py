"""pNLP-Mixer (Fusco et al. 2022, arXiv 2202.04350) in tf.keras (Keras 2, for tfmot QAT).

The model takes the projection's output, not text: the custom op runs in the
input pipeline during training and in front of the model in the exported
``.tflite`` (see ``ondevice_nlp.export``).

Architecture (paper Sec. 2; reference-notes "pNLP-Mixer model"):

* bottleneck: Linear((2w+1)F -> H), no activation, realised as a width-(2w+1)
  ``Conv1D`` over the per-token features, which equals a Linear layer on the
  window-concatenated features (zeros outside the text) with the same
  parameters, but reads a 3x smaller input;
* ``num_blocks`` mixer blocks: ``x + token_mlp(LN(x))`` along the sequence
  axis (S -> token_hidden -> S, ReLU by default, see
  ``MixerConfig.token_activation``), then ``x + channel_mlp(LN(x))`` along
  features (H -> channel_hidden -> H, GELU);
* heads: per-token linear slot-tag logits; intent by attention pooling
  (softmax over tokens of a 1-unit projection, padding masked by a -16 bias,
  times a feature projection, summed) then linear.

One change from the paper: the token-mixing MLP reads ``LN(x) * mask``, so
padding positions contribute nothing to real ones. Then the outputs at real
positions depend only on the first L positions (L = longest utterance of the
batch), and token mixing over L positions is exactly token mixing over S
positions with the first L rows of ``fc1`` and the first L columns of
``fc2``. ``dynamic_length=True`` builds that version (inputs ``[B, None, F]``,
``TokenMixing`` layers) for float training on batches cut to their longest
utterance: MTOP utterances average 8 tokens against S = 64, so a training step
does about 1/5 of the static model's arithmetic. The static version (fixed S,
builtin ``Dense`` layers only) is the one that is quantized and exported;
``copy_weights`` moves weights between the two.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tf_keras as keras

L = keras.layers

MASK_BIAS = 16.0  # additive logit penalty for padding tokens in attention pooling (e^-16: no leak)


@dataclasses.dataclass(frozen=True)
class MixerConfig:
    """Size of a pNLP-Mixer; the projection sizes live in ProjectionConfig."""

    hidden: int = 256
    num_blocks: int = 2
    token_hidden: int = 256
    channel_hidden: int = 256
    dropout: float = 0.2          # on residual branches and the pooled vector (training only)
    feature_dropout: float = 0.2  # on projection features: drops MinHash buckets (training only)
    # Word dropout (training only): zeroes all F features of a token with this probability
    # (one Bernoulli draw per token, kept tokens scaled by 1/(1-p)); the mask is untouched,
    # so the model must tag the token from its neighbours through the window and token mixing.
    # Float phase only: the layer is built into the dynamic-length training model, not into
    # the static model that QAT fine-tunes and the converter exports (built into that one too,
    # a tiny model's QAT phase gave infinite slot logits).
    token_dropout: float = 0.0
    # Activation of the token-mixing MLP. The paper uses GELU; ReLU is our default: the
    # token-mixing hidden tensor is [B, H, token_hidden] whatever the utterance length, and
    # TensorFlow's CPU GELU (erf) and its gradient cost ~10x ReLU on it (about 2/3 of a
    # training step on MTOP); in the int8 .tflite ReLU fuses into FULLY_CONNECTED.
    token_activation: str = "relu"
    # Slot logits also read the pooled intent vector: slots = W x_t + V pooled (one [H, K]
    # matrix more). Slot types depend on the intent (SENDER vs RECIPIENT of a message).
    intent_to_slots: bool = False


@keras.utils.register_keras_serializable("ondevice_nlp")
class TokenMixing(L.Layer):
    """Token-mixing MLP over the first L <= S positions (dynamic-length training).

    Holds the weights of the static model's ``token_fc1`` (kernel [S, T], bias
    [T]) and ``token_fc2`` (kernel [T, S], bias [S]) Dense layers and computes,
    for x float32 [B, L, H] and mask float32 [B, L]:
    ``y[b, :, h] = act((x * mask)[b, :, h] @ W1[:L] + b1) @ W2[:, :L] + b2[:L]``,
    which is what the static layers compute on the same positions when the
    positions L..S-1 are masked. Output float32 [B, L, H].
    """

    def __init__(self, max_tokens: int, hidden: int, activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.max_tokens, self.hidden = max_tokens, hidden
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        S, T = self.max_tokens, self.hidden
        self.w1 = self.add_weight(name="fc1_kernel", shape=(S, T),
                                  initializer=keras.initializers.GlorotUniform())
        self.b1 = self.add_weight(name="fc1_bias", shape=(T,), initializer="zeros")
        self.w2 = self.add_weight(name="fc2_kernel", shape=(T, S),
                                  initializer=keras.initializers.GlorotUniform())
        self.b2 = self.add_weight(name="fc2_bias", shape=(S,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        x, mask = inputs
        n = tf.shape(x)[1]
        x = x * mask[:, :, None]
        h = self.activation(tf.einsum("blh,lt->bht", x, self.w1[:n]) + self.b1)
        y = tf.einsum("bht,tl->blh", h, self.w2[:, :n])
        return y + self.b2[:n][None, :, None]

    def get_config(self):
        return {**super().get_config(), "max_tokens": self.max_tokens, "hidden": self.hidden,
                "activation": keras.activations.serialize(self.activation)}


def build_pnlp_mixer(cfg: MixerConfig, *, max_tokens: int, feature_size: int, window: int,
                     num_intents: int, num_tags: int, name: str = "pnlp_mixer",
                     dynamic_length: bool = False) -> keras.Model:
    """Build the float Keras model.

    Inputs: ``features`` float32 [B, S, F] (per-token projection, window 0) and
    ``mask`` float32 [B, S] (1.0 real token, 0.0 padding; real tokens first).
    Outputs: ``intent`` float32 [B, num_intents] logits and ``slots`` float32
    [B, S, num_tags] logits. With ``dynamic_length`` the sequence axis is
    ``None`` (any L <= S = ``max_tokens``) and token mixing uses ``TokenMixing``
    (see the module docstring); layer names and weight shapes match the static
    model's, so ``copy_weights`` works both ways.
    """
    S = max_tokens
    seq = None if dynamic_length else S
    feats = L.Input((seq, feature_size), name="features")
    mask = L.Input((seq,), name="mask")
    mask3 = L.Reshape((-1, 1), name="mask_3d")(mask)
    x = feats
    if cfg.feature_dropout:
        x = L.Dropout(cfg.feature_dropout, name="feature_dropout")(x)
    if cfg.token_dropout and dynamic_length:
        x = L.Dropout(cfg.token_dropout, noise_shape=(None, None, 1), name="token_dropout")(x)
    x = L.Conv1D(cfg.hidden, 2 * window + 1, padding="same", name="bottleneck")(x)
    x = L.Add(name="pad_fill_add")([x, _padding_fill(mask3, cfg.hidden)])
    for b in range(cfg.num_blocks):
        y = QuantLayerNorm(epsilon=1e-5, name=f"b{b}_token_ln")(x)
        if dynamic_length:
            y = TokenMixing(S, cfg.token_hidden, cfg.token_activation,
                            name=f"b{b}_token_mixing")([y, mask])
        else:
            y = L.Multiply(name=f"b{b}_token_mask")([y, mask3])
            y = L.Permute((2, 1), name=f"b{b}_to_tokens_last")(y)
            y = L.Dense(cfg.token_hidden, activation=cfg.token_activation,
                        name=f"b{b}_token_fc1")(y)
            y = L.Dense(S, name=f"b{b}_token_fc2")(y)
            y = L.Permute((2, 1), name=f"b{b}_to_features_last")(y)
        if cfg.dropout:
            y = L.Dropout(cfg.dropout, name=f"b{b}_token_dropout")(y)
        x = L.Add(name=f"b{b}_token_res")([x, y])
        y = QuantLayerNorm(epsilon=1e-5, name=f"b{b}_channel_ln")(x)
        y = L.Dense(cfg.channel_hidden, activation="gelu", name=f"b{b}_channel_fc1")(y)
        y = L.Dense(cfg.hidden, name=f"b{b}_channel_fc2")(y)
        if cfg.dropout:
            y = L.Dropout(cfg.dropout, name=f"b{b}_dropout")(y)
        x = L.Add(name=f"b{b}_channel_res")([x, y])
    x = QuantLayerNorm(epsilon=1e-5, name="final_ln")(x)
    slots = L.Dense(num_tags, name="slots")(x)
    intent, pooled = _attention_pool_intent(x, mask3, cfg, num_intents)
    if cfg.intent_to_slots:
        from_intent = L.Dense(num_tags, use_bias=False, name="slots_from_intent")(pooled)
        from_intent = L.Reshape((1, num_tags), name="slots_from_intent_3d")(from_intent)
        slots = L.Add(name="slots_with_intent")([slots, from_intent])
    return keras.Model([feats, mask], [intent, slots], name=name)


@keras.utils.register_keras_serializable(package="ondevice_nlp")
class QuantLayerNorm(L.LayerNormalization):
    """LayerNormalization over the last axis whose intermediate tensors (centred
    values, their squares, variance, 1/std) pass through identity hooks that
    quantization-aware training fake-quantizes.

    Float behaviour: exactly ``keras.layers.LayerNormalization(axis=-1)``,
    ``(x - mean) * rsqrt(var + eps) * gamma + beta`` (Ba et al. 2016), same
    weights (gamma, beta), so checkpoints of either load into the other.

    Why: the int8 ``.tflite`` computes LayerNorm as MEAN, SUB, MUL, MEAN, ADD,
    RSQRT, MUL in int8. tfmot's QAT only fake-quantizes the
    layer's output, so the variance and 1/std tensors get their int8 ranges from
    the converter's calibration instead, and those came out too narrow: on the
    six-language MTOP model the first LayerNorm's variance range was [0, 3.35]
    while 86% of Thai real tokens (38% of English ones) have a larger variance,
    so they were clipped (11% relative error after the first LayerNorm; TFLite
    EM 8.3 points under QAT on Thai). With the hooks (``QUANT_HOOKS``: the
    attributes ``<hook>_activation``, which ``train.LayerNormQuantizeConfig``
    wraps) QAT learns EMA ranges for each from the
    training data, trains through their rounding, and the converter takes those
    ranges. Measured on that model (same float weights, QAT re-run): with the
    variance and 1/std hooks only, the first LayerNorm's relative error fell from
    11% to 3.2% and TFLite average EM rose from 60.5 to 61.6 (Thai 45.8 -> 49.6).
    The variance hook also wraps ``variance + epsilon``: without it the int8 ADD
    there had a converter-calibrated range 40-70 % narrower than the variance's
    (same six-language file: Thai TFLite EM 49.6, 52.6 with the hook's range).

    Input/output: float32 [..., H].
    """

    QUANT_HOOKS = ("centred", "square", "variance", "inv_std")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not (self.center and self.scale):
            raise ValueError("QuantLayerNorm needs center=True and scale=True")
        for hook in self.QUANT_HOOKS:
            setattr(self, f"{hook}_activation", keras.activations.linear)

    def build(self, input_shape):
        super().build(input_shape)
        if list(self.axis) != [len(input_shape) - 1]:
            raise ValueError(f"QuantLayerNorm normalizes the last axis only, got axis {self.axis}")

    def call(self, inputs):
        mean = tf.reduce_mean(inputs, axis=-1, keepdims=True)
        centred = self.centred_activation(inputs - mean)
        # a product, not tf.square: TFLite's SQUARE has no int8 kernel, so the converter
        # left it in float32 between a DEQUANTIZE and a QUANTIZE; MUL runs in int8
        square = self.square_activation(centred * centred)
        var = self.variance_activation(tf.reduce_mean(square, axis=-1, keepdims=True))
        # the variance hook again after adding epsilon (smaller than half its int8 step, so
        # QAT values do not change): the int8 ADD then takes the variance's range instead
        # of one the converter calibrates, which was narrower and clipped (see class doc)
        var_eps = self.variance_activation(var + self.epsilon)
        inv_std = self.inv_std_activation(tf.math.rsqrt(var_eps))
        return centred * inv_std * self.gamma + self.beta


def _padding_fill(mask3, hidden: int):
    """(1 - mask) times a fixed +1/-1 pattern over the H channels: [B, S, H], zero on real tokens.

    Added to the bottleneck output, it changes nothing on real tokens (and the
    masked token mixing keeps padding out of them), but gives padding positions
    unit variance. Without it their states are near-constant, so the int8
    ``.tflite``'s LayerNorm (MEAN, SQUARED_DIFFERENCE, RSQRT in int8) calibrated
    an RSQRT output range of [0, 101] on them, which left real tokens' 1/std
    ~0.4 resolution (MTOP en: QAT Keras 69.8 EM, TFLite 68.6).
    """
    pattern = np.where(np.arange(hidden) % 2 == 0, 1.0, -1.0).astype("float32")[None, :]
    pad = L.Rescaling(-1.0, offset=1.0, name="pad_indicator")(mask3)  # 1 - mask
    return L.Dense(hidden, use_bias=False, trainable=False, name="pad_fill",
                   kernel_initializer=keras.initializers.Constant(pattern))(pad)


def _attention_pool_intent(x, mask3, cfg, num_intents):
    """Attention pooling of token states x [B, S, H] with mask [B, S, 1].

    Returns (intent logits [B, C], pooled vector [B, H] after dropout).
    """
    scores = L.Dense(1, name="pool_score")(x)                      # [B, S, 1]
    bias = L.Rescaling(MASK_BIAS, offset=-MASK_BIAS, name="pool_mask_bias")(mask3)
    scores = L.Add(name="pool_masked_score")([scores, bias])
    scores = L.Permute((2, 1), name="pool_score_t")(scores)       # [B, 1, S]
    weights = L.Softmax(name="pool_softmax")(scores)
    values = L.Dense(cfg.hidden, name="pool_value")(x)             # [B, S, H]
    pooled = L.Dot(axes=(2, 1), name="pool_sum")([weights, values])  # [B, 1, H]
    pooled = L.Flatten(name="pool_flatten")(pooled)
    if cfg.dropout:
        pooled = L.Dropout(cfg.dropout, name="pool_dropout")(pooled)
    return L.Dense(num_intents, name="intent")(pooled), pooled


def copy_weights(src: keras.Model, dst: keras.Model) -> None:
    """Copy weights by layer name between the static and dynamic-length models.

    A ``TokenMixing`` layer's four weights map to the ``token_fc1`` and
    ``token_fc2`` Dense layers of the same block and back.

    Raises:
      ValueError: a weighted layer of ``dst`` has no counterpart in ``src``.
    """
    by_name = {}
    for layer in src.layers:
        w = layer.get_weights()
        if isinstance(layer, TokenMixing):
            prefix = layer.name[:-len("token_mixing")]
            by_name[prefix + "token_fc1"], by_name[prefix + "token_fc2"] = w[:2], w[2:]
        elif w:
            by_name[layer.name] = w
    for layer in dst.layers:
        if not layer.trainable_weights:  # no weights, or constants (pad_fill)
            continue
        if isinstance(layer, TokenMixing):
            prefix = layer.name[:-len("token_mixing")]
            names = [prefix + "token_fc1", prefix + "token_fc2"]
            if not all(n in by_name for n in names):
                raise ValueError(f"no weights for {layer.name} in {src.name}")
            layer.set_weights(by_name[names[0]] + by_name[names[1]])
        elif layer.name in by_name:
            layer.set_weights(by_name[layer.name])
        else:
            raise ValueError(f"no weights for layer {layer.name} in {src.name}")
