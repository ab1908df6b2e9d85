"""Baselines of issue 3: a BiLSTM and a small transformer over hashed token ids.

Both read the ``hashid`` projection (``projection_ref``: one float feature per
token, the id ``1 + hash(token) % (V - 1)``, 0 on padding) through the same
custom op as the projection models, so their ``.tflite`` also takes raw
strings, and both have the heads of the other models: per-token slot logits
and intent logits from attention pooling (``pnlp_mixer._attention_pool_intent``).

* ``bilstm``: Embedding(V, E) -> forward LSTM(H) and backward LSTM(H) -> concat
  -> slot Dense, intent pooling (Graves & Schmidhuber 2005; the usual
  BiLSTM tagger of Huang et al. 2015, arXiv:1508.01991, without the CRF).
  The backward LSTM runs forward over each utterance reversed within its real
  tokens (``ReverseTokens``), so that padding (always after the real tokens)
  never reaches a real token's state in either direction: the dynamic-length
  model of float training and the static S-token model of export agree, and
  both LSTMs convert to TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM.
* ``transformer``: Embedding(V, d) + learned positions -> N pre-LN encoder
  layers (Vaswani et al. 2017, arXiv:1706.03762; pre-LN as in Xiong et al.
  2020, arXiv:2002.04745) with self-attention masked to real keys (additive
  logit penalty ``MASK_BIAS`` on padding keys) -> final LayerNorm -> heads;
  padding rows start as a copy of the first token's row (``FillPaddingWithFirst``),
  so every int8 range is set by real-token statistics.

Inputs of both: ``features`` float32 [B, L, 1] (token ids) and ``mask`` float32
[B, L]; outputs: ``intent`` float32 [B, C] and ``slots`` float32 [B, L, K]
logits (the contract of ``pnlp_mixer.build_pnlp_mixer``).
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf
import tf_keras as keras

from ..projection_ref import ProjectionConfig
from . import ModelSize, copy_by_name
from .pnlp_mixer import MASK_BIAS, _attention_pool_intent

L = keras.layers


@dataclasses.dataclass(frozen=True)
class BiLSTMConfig:
    """BiLSTM sizes: vocabulary V, embedding E, LSTM units H per direction.

    ``hidden`` (= 2H, the concatenated state) and ``dropout`` are also read by
    the intent pooling.
    """

    vocab_size: int
    embed_dim: int
    units: int
    dropout: float = 0.1

    @property
    def hidden(self) -> int:
        return 2 * self.units


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Transformer sizes: vocabulary V, model width d (= ``hidden``), layers, heads, FFN width."""

    vocab_size: int
    hidden: int
    num_layers: int
    num_heads: int
    ffn: int
    dropout: float = 0.1

    def __post_init__(self):
        if self.hidden % self.num_heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of num_heads "
                             f"({self.num_heads})")


def _hashid(vocab: int, max_tokens: int) -> ProjectionConfig:
    return ProjectionConfig("hashid", vocab, 1, 0, max_tokens, 0)


# Sized for about 1.0-1.2 MB of int8 .tflite with MTOP en labels (README lists the figures).
# tiny keeps V = 4096 so that tests see ids that int8 quantization would destroy; its
# BiLSTM has 32 units: with 16 the int8 file lost 1-4 of 40 fixture utterances' slots
# against its QAT model on some seeds (CPU thread order decided which), with 32 none
# on seeds 1-4.
BILSTM_SIZES = {
    "1mb": ModelSize(_hashid(10000, 64), 0, BiLSTMConfig(10000, 64, 128, dropout=0.2)),
    "tiny": ModelSize(_hashid(4096, 16), 0, BiLSTMConfig(4096, 16, 32, dropout=0.0)),
}
TRANSFORMER_SIZES = {
    "1mb": ModelSize(_hashid(8000, 64), 0, TransformerConfig(8000, 96, 2, 4, 192, dropout=0.1)),
    "tiny": ModelSize(_hashid(4096, 16), 0, TransformerConfig(4096, 16, 1, 2, 32, dropout=0.0)),
}


class TokenIds(L.Layer):
    """float32 [B, L, 1] ids from the hashid projection -> int32 [B, L].

    Casts first: the int8 converter quantizes a float slice of the op's output
    (scale 26 for ids below 10,000, which destroyed them), never a CAST's input.
    """

    def call(self, features):
        return tf.cast(features, tf.int32)[:, :, 0]


class ReverseTokens(L.Layer):
    """Reverses each row's first n positions, n = number of nonzero ids; padding stays.

    Inputs: ``[x, ids]``, x [B, L, ...] of any dtype, ids int32 [B, L] (0 only
    on padding, which follows the real tokens). Output: x with ``out[b, t] =
    x[b, n_b - 1 - t]`` for t < n_b and ``x[b, t]`` otherwise. Its own inverse.
    A gather with batch_dims=1 (TFLite GATHER, int8 or int32), unlike
    ``tf.reverse_sequence``.
    """

    def call(self, inputs):
        x, ids = inputs
        n = tf.reduce_sum(tf.cast(ids > 0, tf.int32), axis=1, keepdims=True)  # [B, 1]
        t = tf.range(tf.shape(ids)[1], dtype=tf.int32)[None, :]              # [1, L]
        index = tf.where(t < n, n - 1 - t, t + 0 * n)                        # [B, L]
        return tf.gather(x, index, batch_dims=1)


class PositionEmbedding(L.Layer):
    """Learned positions: x [B, L, d] + table[:L] (table float32 [max_len, d])."""

    def __init__(self, max_len: int, **kwargs):
        super().__init__(**kwargs)
        self.max_len = max_len

    def build(self, input_shape):
        self.table = self.add_weight("table", (self.max_len, int(input_shape[-1])),
                                     initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, x):
        return x + self.table[None, :tf.shape(x)[1]]

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len}


@keras.utils.register_keras_serializable(package="ondevice_nlp")
class FillPaddingWithFirst(L.Layer):
    """Padding rows replaced by the first token's row: ``x * m + x[:, :1] * (1 - m)``.

    Inputs ``[x, mask3]``: x float32 [B, L, d] (embeddings + positions), mask3
    float32 [B, L, 1] (1.0 real; real tokens first). Output float32 [B, L, d]:
    real rows unchanged, each padding row equal to row 0 (the first real token).

    Why: the int8 ``.tflite`` computes LayerNorm with MEAN, SQUARED_DIFFERENCE
    and RSQRT on per-tensor int8 ranges calibrated over all S rows, padding
    included, and attention / heads never read padding rows, so padding rows
    only matter through those ranges. Left as embedding + position (id 0 and
    late positions get no gradient), padding rows inflated the RSQRT range
    (see ``build_transformer``); the mixer's fix (``pnlp_mixer._padding_fill``,
    +1/-1 on padding) set the first LayerNorm's variance range to [0, 1] here,
    while real tokens' variance is ~0.002 (embedding std ~0.04): 2-bit
    variances, a 41% relative error on the first LayerNorm's output on MTOP en
    (TFLite 25.2 EM against 28.6 for the QAT Keras model). A copy of a real row
    has real-token statistics, and since padding keys are masked every padding
    row stays an exact copy of row 0 through all layers, so no range anywhere
    is set by padding. Builtin TFLite ops only (STRIDED_SLICE, MUL, SUB, ADD).
    pQRNN uses it before its bottleneck LayerNorm (``pqrnn.build_pqrnn``).
    """

    def call(self, inputs):
        x, mask3 = inputs
        return x * mask3 + x[:, :1] * (1.0 - mask3)


class MaskedAttention(L.Layer):
    """Scaled dot-product attention over heads, padding keys masked.

    Inputs ``[q, k, v, mask]``: q, k, v float32 [B, L, d], mask float32 [B, L]
    (1.0 real). Output float32 [B, L, d]: per head h of width d/heads,
    ``softmax(q_h k_h^T / sqrt(d/heads) + MASK_BIAS * (mask - 1)) v_h``,
    heads concatenated (Vaswani et al. 2017, Sec. 3.2).

    The mask bias is bounded on purpose (``MASK_BIAS`` = 16, not -1e9): the
    int8 ``.tflite`` quantizes the masked score tensor per tensor, so the
    bias's size sets its resolution (MTOP en smoke run: range [-19, 6], steps
    of 0.1). It masks exactly enough because padding keys are copies of key 0
    (``FillPaddingWithFirst``): their weight is at most e^-16 of key 0's.
    """

    def __init__(self, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads

    def _split(self, x):
        b, n = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, [b, n, self.num_heads, x.shape[-1] // self.num_heads])
        return tf.transpose(x, [0, 2, 1, 3])  # [B, heads, L, d/heads]

    def call(self, inputs):
        q, k, v, mask = inputs
        d = q.shape[-1]
        qh, kh, vh = self._split(q), self._split(k), self._split(v)
        scores = tf.matmul(qh, kh, transpose_b=True) * (1.0 / math.sqrt(d // self.num_heads))
        scores = scores + (mask[:, None, None, :] - 1.0) * MASK_BIAS
        out = tf.matmul(tf.nn.softmax(scores, axis=-1), vh)  # [B, heads, L, d/heads]
        out = tf.transpose(out, [0, 2, 1, 3])
        return tf.reshape(out, [tf.shape(q)[0], tf.shape(q)[1], d])

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


CUSTOM_OBJECTS = {c.__name__: c for c in (TokenIds, ReverseTokens, PositionEmbedding,
                                          FillPaddingWithFirst, MaskedAttention)}


def _inputs(max_tokens: int | None):
    feats = L.Input((max_tokens, 1), name="features")
    mask = L.Input((max_tokens,), name="mask")
    return feats, mask, L.Reshape((-1, 1), name="mask_3d")(mask)


def _check_vocab(cfg, num_intents: int, num_tags: int):
    if cfg.vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {cfg.vocab_size}")
    if num_intents < 1 or num_tags < 1:
        raise ValueError(f"need >= 1 intent and tag, got {num_intents}, {num_tags}")


def build_bilstm(cfg: BiLSTMConfig, *, max_tokens: int | None, num_intents: int,
                 num_tags: int, name: str = "bilstm") -> keras.Model:
    """The BiLSTM baseline (module doc); ``max_tokens=None`` gives the dynamic-length model.

    Inputs ``features`` float32 [B, L, 1] (hashid ids), ``mask`` float32 [B, L];
    outputs ``intent`` float32 [B, num_intents], ``slots`` float32 [B, L, num_tags].
    Parameters: V*E + 2*4*H*(E + H + 1) + heads.

    Raises:
      ValueError: vocab_size < 2, or no intents / tags.
    """
    _check_vocab(cfg, num_intents, num_tags)
    feats, mask, mask3 = _inputs(max_tokens)
    ids = TokenIds(name="token_ids")(feats)
    emb = L.Embedding(cfg.vocab_size, cfg.embed_dim, name="embedding")
    x_fwd = emb(ids)
    x_bwd = emb(ReverseTokens(name="reverse_ids")([ids, ids]))
    if cfg.dropout:
        x_fwd = L.Dropout(cfg.dropout, name="embed_dropout_fwd")(x_fwd)
        x_bwd = L.Dropout(cfg.dropout, name="embed_dropout_bwd")(x_bwd)
    h_fwd = L.LSTM(cfg.units, return_sequences=True, name="lstm_fwd")(x_fwd)
    h_bwd = L.LSTM(cfg.units, return_sequences=True, name="lstm_bwd")(x_bwd)
    h_bwd = ReverseTokens(name="reverse_bwd")([h_bwd, ids])
    x = L.Concatenate(name="bilstm_concat")([h_fwd, h_bwd])
    if cfg.dropout:
        x = L.Dropout(cfg.dropout, name="bilstm_dropout")(x)
    return _with_heads(feats, mask, mask3, x, cfg, num_intents, num_tags, name)


def _residual(x, y, rate: float, name: str):
    """x + dropout(y) (Add named ``name + "_res"``)."""
    if rate:
        y = L.Dropout(rate, name=f"{name}_dropout")(y)
    return L.Add(name=f"{name}_res")([x, y])


def _with_heads(feats, mask, mask3, x, cfg, num_intents: int, num_tags: int, name: str):
    """The model from token states x [B, L, H]: slot logits per token, pooled intent logits."""
    slots = L.Dense(num_tags, name="slots")(x)
    intent, _ = _attention_pool_intent(x, mask3, cfg, num_intents)
    return keras.Model([feats, mask], [intent, slots], name=name)


def build_transformer(cfg: TransformerConfig, *, max_tokens: int, num_intents: int,
                      num_tags: int, dynamic_length: bool = False,
                      name: str = "transformer") -> keras.Model:
    """The transformer baseline (module doc).

    ``max_tokens`` S sizes the position table; with ``dynamic_length`` the
    sequence axis is None (any L <= S). Inputs/outputs as ``build_bilstm``.
    Parameters: V*d + S*d + N*(4*d*d + 2*d*ffn + ...) + heads.

    Raises:
      ValueError: vocab_size < 2, or no intents / tags.
    """
    _check_vocab(cfg, num_intents, num_tags)
    feats, mask, mask3 = _inputs(None if dynamic_length else max_tokens)
    ids = TokenIds(name="token_ids")(feats)
    x = L.Embedding(cfg.vocab_size, cfg.hidden, name="embedding")(ids)
    x = PositionEmbedding(max_tokens, name="positions")(x)
    # Padding rows copy the first token (attention never reads them; see the layer): with
    # near-constant padding rows the int8 LayerNorm's RSQRT range left real tokens no
    # resolution (TFLite intent accuracy 7.6% against 59.6% for the QAT Keras model on an
    # MTOP en smoke run), with +1/-1 ones (pnlp_mixer._padding_fill) its variance range did.
    x = FillPaddingWithFirst(name="pad_fill")([x, mask3])
    if cfg.dropout:
        x = L.Dropout(cfg.dropout, name="embed_dropout")(x)
    for i in range(cfg.num_layers):
        y = L.LayerNormalization(epsilon=1e-5, name=f"l{i}_attn_ln")(x)
        q, k, v = (L.Dense(cfg.hidden, name=f"l{i}_{p}")(y) for p in "qkv")
        y = MaskedAttention(cfg.num_heads, name=f"l{i}_attention")([q, k, v, mask])
        x = _residual(x, L.Dense(cfg.hidden, name=f"l{i}_attn_out")(y), cfg.dropout, f"l{i}_attn")
        y = L.LayerNormalization(epsilon=1e-5, name=f"l{i}_ffn_ln")(x)
        y = L.Dense(cfg.ffn, activation="gelu", name=f"l{i}_ffn1")(y)
        x = _residual(x, L.Dense(cfg.hidden, name=f"l{i}_ffn2")(y), cfg.dropout, f"l{i}_ffn")
    x = L.LayerNormalization(epsilon=1e-5, name="final_ln")(x)
    return _with_heads(feats, mask, mask3, x, cfg, num_intents, num_tags, name)


def copy_weights(src: keras.Model, dst: keras.Model) -> None:
    """Copy weights by layer name between the dynamic-length and static models.

    Raises:
      ValueError: the models' weighted layers differ in names or weight shapes.
    """
    copy_by_name(src, dst)


def annotate_for_qat(model: keras.Model) -> keras.Model:
    """Copy of ``model`` with only its Dense layers annotated for tfmot QAT.

    Used with ``train.quantize_aware(..., annotate_all=False,
    custom_objects=CUSTOM_OBJECTS)``: tfmot's LSTM rule fake-quantizes weights
    in a way the TFLite LSTM conversion does not follow, and it has no rule for the custom layers (ids, reversal,
    attention), so those keep float weights during QAT and the converter's
    calibration on the representative texts sets their int8 ranges.
    """
    from ..train import annotate_layers
    return annotate_layers(model, (L.Dense,))
