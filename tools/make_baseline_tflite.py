#!/usr/bin/env python3
"""Write int8 ``.tflite`` files of BERT-style encoders, as timing baselines.

Users who do not pick a projection model ship a small pre-trained transformer
instead. This tool builds the same architectures with **random weights**
(BERT initialisation, N(0, 0.02)): enough for size, MACs, latency and memory,
meaningless for accuracy. Each model takes ``input_ids`` int32 [1, L] (L=64
by default, the projection models' S; 0 = padding, the attention mask is
``ids != 0``) and returns ``intent_logits`` float32 [1, C] (from the first
token, BERT's pooler) and ``slot_logits`` float32 [1, L, T]; C=117 intents
and T=157 BIO tags by default (MTOP English). The tokenizer (WordPiece) is
not part of the file.

Configs (``--config``; vocabulary 30522, WordPiece uncased, like the
published checkpoints):

==============  ======  ======  =====  ======  =============================================
name            layers  hidden  heads  FFN     published model of that shape
==============  ======  ======  =====  ======  =============================================
bert-tiny       2       128     2      512     BERT-Tiny (Turc et al. 2019, arXiv:1908.08962)
bert-mini       4       256     4      1024    BERT-Mini (same paper)
bert-small      4       512     8      2048    BERT-Small (same paper)
mobilebert      24      512     4      4x512   MobileBERT (Sun et al. 2020, arXiv:2004.02984)
==============  ======  ======  =====  ======  =============================================

``mobilebert`` follows the paper's MobileBERT (not TINY): 128-dim embeddings
with the trigram embedding (3 shifted embeddings concatenated, dense to
512), inter-block width 512, intra-block bottleneck 128 (queries/keys from
the bottlenecked input, values from the block input, as in the paper's
shared-bottleneck variant simplified to one bottleneck), 4 attention heads,
4 stacked FFNs of 512, NoNorm (element-wise affine) and ReLU. BERT configs
use LayerNorm and GELU. Position embeddings keep only the L rows the model
can use (the converter folds the lookup), so the file is a little smaller
than a checkpoint with 512 positions.

Conversion: TFLite full-integer int8 (weights and activations, with a
representative set of 32 random id sequences of random lengths), falling
back to float kernels only where no int8 kernel exists; metadata
``{"model": NAME, "parameters": N, "config": {...}}`` is embedded with
``ondevice_nlp.tflite_model.add_metadata`` so ``ondevice-nlp benchmark``
reports the parameter count.

Usage::

    python tools/make_baseline_tflite.py --config bert-tiny --out runs/baselines
    python tools/make_baseline_tflite.py --config all --out runs/baselines
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Shape of a BERT-style encoder (see module doc)."""

    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int = 30522
    embedding: int = 0          # 0: = hidden (BERT); MobileBERT: 128
    bottleneck: int = 0         # 0: none (BERT); MobileBERT: 128
    stacked_ffn: int = 1        # MobileBERT: 4
    mobile: bool = False        # NoNorm + ReLU + trigram embedding


CONFIGS = {
    "bert-tiny": EncoderConfig(2, 128, 2, 512),
    "bert-mini": EncoderConfig(4, 256, 4, 1024),
    "bert-small": EncoderConfig(4, 512, 8, 2048),
    "mobilebert": EncoderConfig(24, 512, 4, 512, embedding=128, bottleneck=128, stacked_ffn=4,
                                mobile=True),
}


def build_encoder(cfg: EncoderConfig, seq_len: int, num_intents: int, num_tags: int,
                  seed: int = 0):
    """A ``tf.Module`` with random weights and ``serve(input_ids int32 [1, L])``.

    Returns:
      (module, number of parameters).
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    variables: list = []

    def var(*shape, init="normal"):
        if init == "zeros":
            v = np.zeros(shape, np.float32)
        elif init == "ones":
            v = np.ones(shape, np.float32)
        else:
            v = (0.02 * rng.standard_normal(shape)).astype(np.float32)
        t = tf.Variable(v)
        variables.append(t)
        return t

    def dense(n_in, n_out):
        return var(n_in, n_out), var(n_out, init="zeros")

    def apply(x, wb):
        w, b = wb
        return tf.einsum("bld,de->ble", x, w) + b if x.shape.rank == 3 else tf.matmul(x, w) + b

    h, e = cfg.hidden, cfg.embedding or cfg.hidden
    inner = cfg.bottleneck or h
    tok_emb = var(cfg.vocab, e)
    pos_emb = var(seq_len, h)
    emb_proj = dense(3 * e, h) if cfg.mobile else None
    emb_norm = (var(h, init="ones"), var(h, init="zeros"))
    blocks = []
    for _ in range(cfg.layers):
        blk = {
            "q": dense(inner, inner), "k": dense(inner, inner), "v": dense(h, inner),
            "o": dense(inner, inner),
            "n1": (var(inner, init="ones"), var(inner, init="zeros")),
            "ffn": [(dense(inner, cfg.ffn), dense(cfg.ffn, inner),
                     (var(inner, init="ones"), var(inner, init="zeros")))
                    for _ in range(cfg.stacked_ffn)],
        }
        if cfg.bottleneck:
            blk["b_in"] = dense(h, inner)
            blk["b_out"] = dense(inner, h)
            blk["n_out"] = (var(h, init="ones"), var(h, init="zeros"))
        blocks.append(blk)
    pooler = dense(h, h)
    intent_head = dense(h, num_intents)
    slot_head = dense(h, num_tags)
    n_params = int(sum(np.prod(v.shape) for v in variables))
    head_dim = inner // cfg.heads

    def norm(x, gb):
        g, b = gb
        if cfg.mobile:  # NoNorm: element-wise affine
            return x * g + b
        mean, var_ = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var_ + 1e-12) * g + b

    def act(x):
        return tf.nn.relu(x) if cfg.mobile else tf.nn.gelu(x, approximate=False)

    def heads(x):
        return tf.transpose(tf.reshape(x, [1, seq_len, cfg.heads, head_dim]), [0, 2, 1, 3])

    @tf.function(input_signature=[tf.TensorSpec([1, seq_len], tf.int32, name="input_ids")])
    def serve(input_ids):
        x = tf.gather(tok_emb, input_ids)                                  # [1, L, E]
        if cfg.mobile:  # trigram embedding: [x_{i+1}, x_i, x_{i-1}] -> dense
            nxt = tf.pad(x[:, 1:], [[0, 0], [0, 1], [0, 0]])
            prv = tf.pad(x[:, :-1], [[0, 0], [1, 0], [0, 0]])
            x = apply(tf.concat([nxt, x, prv], -1), emb_proj)
        x = norm(x + pos_emb[None], emb_norm)                              # [1, L, H]
        bias = (1.0 - tf.cast(tf.not_equal(input_ids, 0), tf.float32)) * -1e4
        bias = bias[:, None, None, :]                                      # [1, 1, 1, L]
        for blk in blocks:
            inp = apply(x, blk["b_in"]) if cfg.bottleneck else x           # [1, L, inner]
            q, k = heads(apply(inp, blk["q"])), heads(apply(inp, blk["k"]))
            v = heads(apply(x, blk["v"]))
            att = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / np.sqrt(head_dim) + bias)
            ctx = tf.reshape(tf.transpose(tf.matmul(att, v), [0, 2, 1, 3]), [1, seq_len, inner])
            y = norm(apply(ctx, blk["o"]) + inp, blk["n1"])
            for up, down, n in blk["ffn"]:
                y = norm(apply(act(apply(y, up)), down) + y, n)
            x = norm(apply(y, blk["b_out"]) + x, blk["n_out"]) if cfg.bottleneck else y
        pooled = tf.tanh(apply(x[:, 0], pooler))
        return {"intent_logits": apply(pooled, intent_head),
                "slot_logits": apply(x, slot_head)}

    module = tf.Module()
    module.vars = variables
    module.serve = serve
    return module, n_params


def convert_int8(module, seq_len: int, vocab: int, seed: int = 0) -> bytes:
    """Full-integer int8 TFLite flatbuffer of ``module.serve``.

    Raises:
      RuntimeError: the converter failed (its message is kept).
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed + 1)

    def rep():
        for _ in range(32):
            n = int(rng.integers(4, seq_len + 1))
            ids = np.zeros((1, seq_len), np.int32)
            ids[0, 0] = 101  # [CLS]
            ids[0, 1:n] = rng.integers(1000, vocab, n - 1)
            yield [ids]

    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                      tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return conv.convert()
    except Exception as e:  # ConverterError and friends
        raise RuntimeError(f"TFLite conversion failed: {e}") from e


def make(name: str, out_dir: str, seq_len: int = 64, num_intents: int = 117,
         num_tags: int = 157, seed: int = 0) -> tuple[str, int, int]:
    """Build, convert and write ``out_dir/NAME.tflite``; returns (path, parameters, bytes)."""
    from ondevice_nlp.tflite_model import add_metadata, write_atomic

    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose from {sorted(CONFIGS)}")
    cfg = CONFIGS[name]
    module, n_params = build_encoder(cfg, seq_len, num_intents, num_tags, seed)
    buf = convert_int8(module, seq_len, cfg.vocab, seed)
    meta = {"model": name, "baseline": "random weights, for timing only",
            "parameters": n_params, "seq_len": seq_len,
            "config": cfg.summary(), "intents": num_intents, "tags": num_tags}
    buf = add_metadata(buf, meta)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.tflite")
    write_atomic(path, buf)
    return path, n_params, len(buf)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", action="append", choices=sorted(CONFIGS) + ["all"],
                   help="repeatable; default bert-tiny")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--intents", type=int, default=117)
    p.add_argument("--tags", type=int, default=157)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    names = args.config or ["bert-tiny"]
    if "all" in names:
        names = list(CONFIGS)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in names:
        t0 = time.time()
        try:
            path, n_params, nbytes = make(name, args.out, args.seq_len, args.intents, args.tags,
                                          args.seed)
        except (RuntimeError, ValueError) as e:
            print(f"make_baseline_tflite: error: {name}: {e}", file=sys.stderr)
            return 1
        print(f"{path}: {n_params:,} parameters, {nbytes:,} bytes ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
