#!/usr/bin/env python3
"""Size and latency of the int8 pQRNN ``.tflite`` per fo-pooling implementation.

For each size and ``QRNNConfig.scan`` ("parallel", "unroll", "while"): builds
the static model (untrained, MTOP label counts by default), wraps it for QAT
(``train.quantize_aware(pqrnn.annotate_for_qat(model))``), calibrates the QAT
ranges on projected synthetic utterances, exports with
``export.convert_int8`` and loads the file in ai-edge-litert
(``TFLiteModel``). Prints a markdown table: parameters, ``.tflite`` bytes,
operators (all subgraphs), conversion seconds, latency of ``TFLiteModel.run``
on one utterance (``--runs`` calls) and on a batch of 32 (``--runs``/10 calls):
median CPU ms of this process and median / 90th percentile wall ms (1
interpreter thread; the projection op included), and the largest difference
of intent probabilities from the QAT Keras model.

Usage: python tools/pqrnn_scan_bench.py [--sizes 1mb,2mb] [--scans parallel,unroll,while]
           [--intents 117] [--tags 157] [--runs 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

WORDS = ("set an alarm for seven am tomorrow what is the weather in paris send a message to bob "
         "remind me call mom play some music by the beatles how long will it take to get home "
         "cancel my timer show me news about football recipes with chicken and rice").split()


def utterances(n: int, seed: int = 0) -> list[bytes]:
    """n synthetic utterances of 2 to 20 words (UTF-8 bytes)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 20))).encode()
            for _ in range(n)]


def count_ops(buf: bytes) -> int:
    """Operators in all subgraphs of a .tflite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(buf, 0)
    return sum(model.Subgraphs(i).OperatorsLength() for i in range(model.SubgraphsLength()))


def timed_ms(fns: dict, runs: int) -> dict:
    """{key: (median wall ms, 90th percentile wall ms, median CPU ms)} of ``fns[key]()``.

    ``runs`` calls each, round-robin so that load from other processes falls
    on all of them alike; CPU ms is this process's CPU time
    (``time.process_time``), which other processes' load disturbs less than
    wall time.
    """
    for fn in fns.values():
        for _ in range(3):
            fn()
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[k].append((time.perf_counter() - t0) * 1e3)
            cpu[k].append((time.process_time() - c0) * 1e3)
    return {k: (float(np.median(wall[k])), float(np.percentile(wall[k], 90)),
                float(np.median(cpu[k]))) for k in fns}


def export_one(size_name: str, scan: str, intents: int, tags: int) -> dict:
    """Build, QAT-wrap, calibrate and export one model; returns its figures and TFLiteModel."""
    import tensorflow as tf

    from ondevice_nlp import train as T
    from ondevice_nlp.export import convert_int8
    from ondevice_nlp.models import pqrnn
    from ondevice_nlp.projection_ref import project
    from ondevice_nlp.tflite_model import TFLiteModel

    size = pqrnn.QRNN_SIZES[size_name]
    proj = size.projection
    model = pqrnn.build_pqrnn(dataclasses.replace(size.net, scan=scan),
                              max_tokens=proj.max_tokens, feature_size=proj.feature_size,
                              window=0, num_intents=intents, num_tags=tags)
    qat = T.quantize_aware(pqrnn.annotate_for_qat(model))
    texts = utterances(256)
    feats, mask, _ = project(texts, proj)
    S = proj.max_tokens
    ds = tf.data.Dataset.from_tensor_slices(
        ({"features": feats, "mask": mask}, (np.zeros(len(texts)), np.zeros((len(texts), S)))))
    T.calibrate_quantization_ranges(qat, ds.batch(32).repeat(), steps=8)
    labels = {"intents": [f"I{i}" for i in range(intents)], "tags": [f"T{i}" for i in range(tags)]}
    t0 = time.time()
    buf = convert_int8(qat, proj, texts[:100], {"labels": labels})
    convert_s = time.time() - t0
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.tflite")
        with open(path, "wb") as f:
            f.write(buf)
        tfl = TFLiteModel(path)
    batch = texts[:32]
    probs = tfl.run(batch)["intent_probs"]
    keras_probs = tf.nn.softmax(qat({"features": feats[:32], "mask": mask[:32]},
                                    training=False)[0]).numpy()
    return {"size": size_name, "scan": scan, "params": int(model.count_params()),
            "bytes": len(buf), "ops": count_ops(buf), "convert_s": convert_s,
            "max_prob_diff": float(np.abs(probs - keras_probs).max()), "tfl": tfl,
            "texts": texts}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1mb")
    ap.add_argument("--scans", default="parallel,unroll,while")
    ap.add_argument("--intents", type=int, default=117)
    ap.add_argument("--tags", type=int, default=157)
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args(argv)
    print("| size | scan | parameters | .tflite bytes | ops | convert s "
          "| batch 1: CPU ms, wall ms (median / p90) | batch 32: CPU ms, wall ms (median / p90) "
          "| max intent prob diff vs QAT Keras |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in a.sizes.split(","):
        rs = [export_one(size, scan, a.intents, a.tags) for scan in a.scans.split(",")]
        one, batch = rs[0]["texts"][:1], rs[0]["texts"][:32]
        b1 = timed_ms({r["scan"]: (lambda t=r["tfl"]: t.run(one)) for r in rs}, a.runs)
        b32 = timed_ms({r["scan"]: (lambda t=r["tfl"]: t.run(batch)) for r in rs},
                       max(10, a.runs // 10))
        for r in rs:
            r["b1"], r["b32"] = b1[r["scan"]], b32[r["scan"]]
            print(f"| {r['size']} | {r['scan']} | {r['params']:,} | {r['bytes']:,} | {r['ops']} | "
                  f"{r['convert_s']:.0f} | {r['b1'][2]:.2f}, {r['b1'][0]:.2f} / {r['b1'][1]:.2f} | "
                  f"{r['b32'][2]:.1f}, {r['b32'][0]:.1f} / {r['b32'][1]:.1f} | "
                  f"{r['max_prob_diff']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
