#!/usr/bin/env python3
"""Where does an int8 ``.tflite`` depart from the QAT Keras model it was exported from?

For each layer of the QAT model whose output the ``.tflite`` keeps as an int8
tensor of the same shape (found by the layer's name in the tensor names, the
last such tensor in execution order), prints the relative error
``||tflite - keras|| / ||keras||`` (Frobenius norms over the real tokens of each
utterance, averaged over utterances), in execution order. An op whose int8
rounding or range the QAT model does not simulate shows up as a jump between
consecutive rows. This is how the LayerNorm variance ranges were found
(``models/pnlp_mixer.QuantLayerNorm``).

Usage:
  python tools/int8_layer_error.py RUN_DIR --dataset mtop --data-dir ../shared/data/mtop \\
      --languages th [--split test] [--n 200]

RUN_DIR is an ``ondevice-nlp build --out`` folder: ``model.tflite`` and
``checkpoints/qat.weights.h5``. The interpreter runs with the reference kernels
and ``experimental_preserve_all_tensors`` (so every intermediate tensor can be
read), one utterance at a time.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def load_qat_model(run_dir: str, tfl):
    """The QAT Keras model of ``run_dir`` (``checkpoints/qat.weights.h5``), rebuilt from the
    settings in the ``.tflite`` metadata (``tfl``: a ``TFLiteModel``). A ``build --crf``
    checkpoint holds the ``crf.CRFTagger`` wrapper's weights; the network inside it is
    returned."""
    from ondevice_nlp import train as T
    from ondevice_nlp.pipeline import model_spec

    meta = tfl.meta
    spec = model_spec(meta["model"])
    size = spec.get_size(meta["size"], meta["projection"]["max_tokens"], None)
    static = spec.build(size, num_intents=len(tfl.intents), num_tags=len(tfl.tags), dynamic=False)
    qat = T.quantize_aware(spec.prepare_qat(static), annotate_all=spec.annotate_all,
                           custom_objects=spec.custom_objects)
    weights = os.path.join(run_dir, "checkpoints", "qat.weights.h5")
    if tfl.crf_transitions is not None:  # `build --crf` saved the CRF wrapper's weights
        from ondevice_nlp.crf import CRFTagger
        tagger = CRFTagger(qat, tfl.allowed, init=tfl.crf_transitions)
        tagger.load_weights(weights)
    else:
        qat.load_weights(weights)
    return qat, size.projection


def match_layers(qat, tensor_details, op_details) -> list[tuple[str, int]]:
    """(Keras layer name, TFLite tensor index) pairs in execution order: for each layer, the
    last int8 tensor produced by an op whose (first) name contains ``/<layer name>/`` (or
    ends with it) and whose shape equals the layer's output shape with batch 1."""
    produced_at = {o: k for k, op in enumerate(op_details) for o in op["outputs"]}
    pairs = []
    for layer in qat.layers:
        shape = getattr(layer, "output_shape", None)
        if not isinstance(shape, tuple) or len(shape) < 2:
            continue
        want = (1, *shape[1:])
        # a fused op's tensor is named after all its sources, "a/x;b/y": use the first
        hits = [d for d in tensor_details
                if (f"/{layer.name}/" in d["name"].split(";")[0]
                    or d["name"].split(";")[0].endswith(f"/{layer.name}"))
                and tuple(d["shape"]) == want and d["dtype"] == np.int8
                and d["index"] in produced_at]
        if hits:
            best = max(hits, key=lambda d: produced_at[d["index"]])
            pairs.append((layer.name, best["index"]))
    return sorted(pairs, key=lambda p: produced_at[p[1]])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--dataset", default="mtop")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--languages", default="en")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=200, help="utterances per language (first N)")
    a = ap.parse_args(argv)

    import tensorflow as tf  # noqa: F401  (loads our TF op)
    import tf_keras as keras

    from ondevice_nlp import ops
    from ondevice_nlp import train as T
    from ondevice_nlp.data import load_dataset
    from ondevice_nlp.tflite_model import TFLiteModel

    path = os.path.join(a.run_dir, "model.tflite")
    tfl = TFLiteModel(path)
    qat, proj = load_qat_model(a.run_dir, tfl)
    interp = ops.make_interpreter(path, op_resolver="reference", preserve_all_tensors=True)
    interp.allocate_tensors()
    details = interp.get_tensor_details()
    pairs = match_layers(qat, details, interp._get_ops_details())  # noqa: SLF001
    if not pairs:
        print(f"{path}: no QAT layer output found among the .tflite tensors", file=sys.stderr)
        return 1
    by_index = {d["index"]: d for d in details}
    # the last call of each layer: a layer the QAT clone called again (pQRNN's mask quantizer)
    # keeps its first call's output from the graph it was cloned from
    probe = keras.Model(qat.inputs, [qat.get_layer(name).get_output_at(-1) for name, _ in pairs])
    input_index = interp.get_input_details()[0]["index"]
    labels = T.Labels(tfl.intents, tfl.tags)

    for lang, examples in load_dataset(a.dataset, a.data_dir, a.languages.split(","),
                                       a.split).items():
        examples = examples[:a.n]
        enc = T.encode(examples, labels, proj.max_tokens)
        errs = np.zeros((len(pairs),))
        row = 0
        for x in T.make_dataset(enc, proj, 64, shuffle=False, with_labels=False):
            outs = probe(x, training=False)
            outs = [o.numpy() for o in (outs if isinstance(outs, list) else [outs])]
            for j in range(outs[0].shape[0]):
                interp.set_tensor(input_index, np.array([enc.texts[row]], dtype=object))
                interp.invoke()
                n_tok = int(enc.mask[row].sum())
                for k, (_, idx) in enumerate(pairs):
                    scale, zero = by_index[idx]["quantization"]
                    got = (interp.get_tensor(idx)[0].astype(np.float64) - zero) * scale
                    ref = outs[k][j].astype(np.float64)
                    if ref.ndim >= 1 and ref.shape[0] == proj.max_tokens:
                        got, ref = got[:n_tok], ref[:n_tok]
                    errs[k] += np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12)
                row += 1
        print(f"\n{lang}: {row} utterances, {os.path.basename(path)} against its QAT model")
        print("| layer | tflite tensor | relative error |\n|---|---|---|")
        for (name, idx), e in zip(pairs, errs / max(row, 1)):
            print(f"| {name} | {by_index[idx]['name'][:60]} | {e:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
