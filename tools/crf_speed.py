#!/usr/bin/env python3
"""Milliseconds per training step of the slot CRF: sparse sums against dense ones.

Times ``model.fit`` steps of a pNLP-Mixer (``--size``, dynamic length) on random
features, three ways, each compiled with ``build``'s optimizer (``train.compile_model``:
AdamW, warm-up then cosine decay): the per-token softmax (``build --no-crf``), the
``crf.CRFTagger`` with its sparse forward-backward sums over the allowed
transitions (what ``build --crf`` trains with), and the same wrapper with the
dense sums over all K^2 transitions (``allowed`` unset: the code before the
sparse sums). With ``--distill`` the CRF loss adds the marginals' KL term of
``build --crf --teacher`` (a second forward and a backward recursion).

The allowed pattern is random with ``--allowed`` tag-to-tag pairs (O reachable
from every tag); the defaults are six-language MTOP's: 149 BIO tags, 911
allowed transitions (``build`` logs "slot CRF: N learned transition scores"),
113 intents, batch 128.

Usage:
  python tools/crf_speed.py [--length 16] [--steps 10] [--threads N] [--distill]

Prints a Markdown table (ms per step, mean of ``--steps`` steps after two
warm-up steps) and the loss of each CRF variant's first batch (equal up to
rounding: the same loss, summed two ways).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def random_allowed(rng, tags: int, pairs: int) -> np.ndarray:
    """bool [tags + 1, tags]: about ``pairs`` allowed tag-to-tag transitions, O (tag 0)
    allowed after every tag and first, every tag allowed first."""
    allowed = np.zeros((tags + 1, tags), bool)
    allowed[:, 0] = True
    allowed[tags] = True
    free = np.flatnonzero(~allowed[:tags].ravel())
    extra = max(0, pairs - tags)
    allowed[:tags].ravel()[rng.choice(free, size=min(extra, free.size), replace=False)] = True
    return allowed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="base")
    p.add_argument("--tags", type=int, default=149)
    p.add_argument("--allowed", type=int, default=911, help="allowed tag-to-tag transitions")
    p.add_argument("--intents", type=int, default=113)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--length", type=int, default=16, help="tokens per utterance (all real)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=None,
                   help="TensorFlow intra- and inter-op threads (default: TensorFlow's)")
    p.add_argument("--distill", action="store_true", help="time build --crf --teacher's loss")
    a = p.parse_args(argv)
    if min(a.tags, a.allowed, a.intents, a.batch, a.length, a.steps, a.threads or 1) < 1:
        p.error("every count must be >= 1")

    import tensorflow as tf
    if a.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(a.threads)
            tf.config.threading.set_inter_op_parallelism_threads(a.threads)
        except RuntimeError as e:  # TensorFlow already started in this process
            p.error(f"--threads: {e}")
    import tf_keras as keras

    from ondevice_nlp import distill as D
    from ondevice_nlp import train as T
    from ondevice_nlp.configs import get_size
    from ondevice_nlp.crf import CRFTagger
    from ondevice_nlp.pipeline import model_spec

    rng = np.random.default_rng(0)
    B, L, K, I = a.batch, a.length, a.tags, a.intents
    allowed = random_allowed(rng, K, a.allowed)
    size = get_size(a.size)
    spec = model_spec("pnlp_mixer")

    def network():  # the same initial weights for every variant
        keras.utils.set_random_seed(0)
        return spec.build(size, num_intents=I, num_tags=K, dynamic=True)

    F = network().input[0].shape[-1]
    x = {"features": tf.constant(rng.random((B, L, F)).astype(np.float32)),
         "mask": tf.ones((B, L))}
    hard_i = rng.integers(0, I, (B, 1)).astype(np.float32)
    hard_t = np.zeros((B, L, 1), np.float32)  # all O: a path every pattern allows
    w = tf.ones((B,))
    if a.distill:
        y = (tf.constant(np.concatenate([hard_i, rng.normal(size=(B, I))], 1), tf.float32),
             tf.constant(np.concatenate([hard_t, rng.normal(size=(B, L, K))], 2), tf.float32))
    else:
        y = (tf.constant(hard_i[:, 0]), tf.constant(hard_t[..., 0]))
    ds = tf.data.Dataset.from_tensors((x, y, (w, w))).repeat()
    kd = (2.0, 0.5) if a.distill else None

    rows, first_loss = [], {}
    for name in ("softmax (--no-crf)", "CRF, sparse sums", "CRF, dense sums"):
        net_i = network()
        if name.startswith("softmax"):
            model = net_i
            losses = D.distill_losses(*kd) if kd else None  # None: sparse cross-entropy
        else:
            model = CRFTagger(net_i, allowed, distill=kd)
            if "dense" in name:
                model.allowed = None  # crf_nll / crf_log_marginals then sum densely
            first_loss[name] = float(model.batch_losses((x, y, (w, w)))[1])
            losses = None  # the wrapper's train_step computes its own loss, as in build
        # build's optimizer: AdamW with warm-up and cosine decay (train.compile_model)
        T.compile_model(model, 1e-3, total_steps=a.steps + 2, warmup_steps=1,
                        weight_decay=0.01, losses=losses)
        model.fit(ds.take(2), verbose=0)  # tracing and warm-up
        t0 = time.perf_counter()
        model.fit(ds.take(a.steps), verbose=0)
        rows.append((name, 1000.0 * (time.perf_counter() - t0) / a.steps))
        keras.backend.clear_session()

    print(f"pNLP-Mixer {a.size}, batch {B}, {L} tokens, {K} tags, "
          f"{int(allowed[:K].sum())} allowed transitions, {I} intents, "
          f"{'distillation loss, ' if a.distill else ''}"
          f"{a.threads or tf.config.threading.get_intra_op_parallelism_threads() or 'default'}"
          " thread(s)")
    print("\n| training step | ms per step |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.0f} |")
    print("\nslot loss of the first batch: " +
          ", ".join(f"{k}: {v:.6g}" for k, v in first_loss.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
