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
  axis (S -> token_hidden -> S, GELU), then ``x + channel_mlp(LN(x))`` along
  features (H -> channel_hidden -> H, GELU);
* heads: per-token linear slot-tag logits; intent by attention pooling
  (softmax over tokens of a 1-unit projection, padding masked by a -8 bias,
  times a feature projection, summed) then linear.
"""

from __future__ import annotations

import dataclasses

import tf_keras as keras

L = keras.layers

MASK_BIAS = 8.0  # additive logit penalty for padding tokens in attention pooling


@dataclasses.dataclass(frozen=True)
class MixerConfig:
    """Size of a pNLP-Mixer; the projection sizes live in ProjectionConfig."""

    hidden: int = 256
    num_blocks: int = 2
    token_hidden: int = 256
    channel_hidden: int = 256
    dropout: float = 0.2          # on residual branches and the pooled vector (training only)
    feature_dropout: float = 0.2  # on projection features: drops MinHash buckets (training only)


def build_pnlp_mixer(cfg: MixerConfig, *, max_tokens: int, feature_size: int, window: int,
                     num_intents: int, num_tags: int, name: str = "pnlp_mixer") -> keras.Model:
    """Build the float Keras model.

    Inputs: ``features`` float32 [B, S, F] (per-token projection, window 0) and
    ``mask`` float32 [B, S] (1.0 real token, 0.0 padding).
    Outputs: ``intent`` float32 [B, num_intents] logits and ``slots`` float32
    [B, S, num_tags] logits.
    """
    S = max_tokens
    feats = L.Input((S, feature_size), name="features")
    mask = L.Input((S,), name="mask")
    x = feats
    if cfg.feature_dropout:
        x = L.Dropout(cfg.feature_dropout, name="feature_dropout")(x)
    x = L.Conv1D(cfg.hidden, 2 * window + 1, padding="same", name="bottleneck")(x)
    for b in range(cfg.num_blocks):
        y = L.LayerNormalization(epsilon=1e-5, name=f"b{b}_token_ln")(x)
        y = L.Permute((2, 1), name=f"b{b}_to_tokens_last")(y)
        y = L.Dense(cfg.token_hidden, activation="gelu", name=f"b{b}_token_fc1")(y)
        y = L.Dense(S, name=f"b{b}_token_fc2")(y)
        y = L.Permute((2, 1), name=f"b{b}_to_features_last")(y)
        if cfg.dropout:
            y = L.Dropout(cfg.dropout, name=f"b{b}_token_dropout")(y)
        x = L.Add(name=f"b{b}_token_res")([x, y])
        y = L.LayerNormalization(epsilon=1e-5, name=f"b{b}_channel_ln")(x)
        y = L.Dense(cfg.channel_hidden, activation="gelu", name=f"b{b}_channel_fc1")(y)
        y = L.Dense(cfg.hidden, name=f"b{b}_channel_fc2")(y)
        if cfg.dropout:
            y = L.Dropout(cfg.dropout, name=f"b{b}_dropout")(y)
        x = L.Add(name=f"b{b}_channel_res")([x, y])
    x = L.LayerNormalization(epsilon=1e-5, name="final_ln")(x)
    slots = L.Dense(num_tags, name="slots")(x)
    return keras.Model([feats, mask], [_attention_pool_intent(x, mask, cfg, num_intents), slots],
                       name=name)


def _attention_pool_intent(x, mask, cfg, num_intents):
    """Intent logits [B, C] from token states x [B, S, H] by attention pooling."""
    S = x.shape[1]
    scores = L.Dense(1, name="pool_score")(x)                      # [B, S, 1]
    bias = L.Reshape((S, 1), name="pool_mask_reshape")(mask)
    bias = L.Rescaling(MASK_BIAS, offset=-MASK_BIAS, name="pool_mask_bias")(bias)
    scores = L.Add(name="pool_masked_score")([scores, bias])
    scores = L.Permute((2, 1), name="pool_score_t")(scores)       # [B, 1, S]
    weights = L.Softmax(name="pool_softmax")(scores)
    values = L.Dense(cfg.hidden, name="pool_value")(x)             # [B, S, H]
    pooled = L.Dot(axes=(2, 1), name="pool_sum")([weights, values])  # [B, 1, H]
    pooled = L.Flatten(name="pool_flatten")(pooled)
    if cfg.dropout:
        pooled = L.Dropout(cfg.dropout, name="pool_dropout")(pooled)
    return L.Dense(num_intents, name="intent")(pooled)
