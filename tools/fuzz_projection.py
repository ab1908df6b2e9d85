#!/usr/bin/env python3
"""Differential fuzzing of the OndeviceProjection op: NumPy reference vs TF op vs TFLite kernel.

Two modes:

``corpus``: run the seeded hostile corpus of ``tools/hostile_text.py`` (a few
thousand strings in twelve categories, plus 1 MiB strings with ``--huge``)
through the reference (``ondevice_nlp.projection_ref``), the TensorFlow op
(``ondevice_nlp.ops.projection``) and the TFLite kernel (a real ``.tflite``
converted in process, run by ``ai_edge_litert`` through
``ondevice_nlp.ops.make_interpreter``, batches of random size 1..256 so the
kernel is re-prepared often). The three must agree bit for bit and the
outputs must satisfy the spec's invariants (shapes [B,S,D], [B,S], [B,S,2];
mask a prefix of ones; token offsets increasing inside the input; padding
zero). Prints one summary line ``corpus: strings=N configs=K bytes=M
mismatches=0`` and exits 0, or lists mismatches and exits 1.
``tests/test_hostile_projection.py`` runs this in process and, with
``ONDEVICE_NLP_LIB_DIR`` pointing at an ASan/UBSan build, in a subprocess.

``atheris``: coverage-guided fuzzing with atheris (libFuzzer), instrumenting
the Python reference so its branches (UTF-8 decoder, character classes,
tokenizer) guide the search; every input is split into 1..4 strings and run
through all three. Extra arguments go to libFuzzer, e.g.::

    python tools/fuzz_projection.py atheris -runs=100000 -max_len=4096 -rss_limit_mb=6144 CORPUS_DIR
    python tools/fuzz_projection.py atheris -max_total_time=600 -seed_corpus  # seeds: ./projection-seeds

The process holds TensorFlow and the TFLite interpreter (about 2.1 GB resident), over
libFuzzer's default ``-rss_limit_mb=2048``: pass a higher limit, e.g. ``-rss_limit_mb=6144``.

A mismatch raises AssertionError: libFuzzer saves the input as ``crash-*``.

``kernel-canary N``: see ``kernel_canary`` (used to prove that a sanitizer build of
the TFLite kernel is instrumented when loaded into Python).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO), str(REPO / "tools")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402

import hostile_text  # noqa: E402
from ondevice_nlp.projection_ref import ProjectionConfig, word_dictionary  # noqa: E402

# A word dictionary (config version 4) over the hostile corpus's Thai and Lao words,
# single letters among them, so that runs are cut both into words and around them.
_WORDS, _WORD_LEN = word_dictionary(["สวัสดี", "ครับ", "ภาษา", "ไทย", "กั่", "ก", "เ", "ໄປ", "ໃສ",
                                     "ເພາະ", "ວ່າ"])

# name: [version, method, F, N, w, S, seed] (version 1), [2, ..., shape] (version 2,
# token shape features), [3, ..., shape, ngram] or version 4's vector (a word
# dictionary); the first runs over everything.
CONFIG_VECTORS = {
    "minhash-small": [1, 0, 64, 8, 1, 16, 7],
    "ternary": [1, 1, 33, 1, 2, 7, 99],
    "minhash-base": [1, 0, 1024, 64, 0, 64, 0],  # the shipped models' projection
    "minhash-shape": [2, 0, 64, 8, 1, 16, 7, 1],
    "ternary-shape": [2, 1, 37, 1, 2, 7, 99, 1],
    "hashid": [1, 2, 8000, 1, 0, 16, 3],  # the baselines' token ids (vocabulary 8000)
    "minhash-ngram": [3, 0, 64, 8, 1, 16, 7, 1, 3],  # letter n-grams (version 3; base-ng4: ngram 4)
    # a word dictionary (version 4, 11 + 2K entries; build --words)
    "ternary-words": ProjectionConfig("ternary", 33, 1, 1, 16, 99, words=_WORDS,
                                      word_len=_WORD_LEN).to_vector().tolist(),
}
DEFAULT_CASES = 3000
DEFAULT_SEED = 20261123


def corpus_strings(n: int = DEFAULT_CASES, seed: int = DEFAULT_SEED) -> list[bytes]:
    """Fixed edge cases followed by ``n`` seeded random hostile strings."""
    return hostile_text.fixed_cases() + [t for _, t in hostile_text.cases(seed, n)]


def convert_projection_model(cfg_vec) -> bytes:
    """A ``.tflite`` (bytes) whose only op is OndeviceProjection with a constant config."""
    import tensorflow as tf

    from ondevice_nlp import ops

    vec = np.asarray(cfg_vec, np.int32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def fn(x):
        return ops.projection(x, tf.constant(vec))

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    conv.allow_custom_ops = True
    return conv.convert()


class Runners:
    """The three implementations for one config vector (int32 [7] or [8])."""

    def __init__(self, cfg_vec):
        from ondevice_nlp import ops
        from ondevice_nlp import projection_ref as ref

        self.ops, self.ref = ops, ref
        self.vec = np.asarray(cfg_vec, np.int32)
        self.cfg = ref.ProjectionConfig.from_vector(self.vec)
        self.interpreter = ops.make_interpreter(model_content=convert_projection_model(self.vec))
        self._input = self.interpreter.get_input_details()[0]["index"]

    def reference(self, texts):
        return self.ref.project(list(texts), self.cfg)

    def tf_op(self, texts):
        return [t.numpy() for t in self.ops.projection(list(texts), self.vec)]

    def tflite(self, texts):
        it = self.interpreter
        it.resize_tensor_input(self._input, [len(texts)])
        it.allocate_tensors()
        it.set_tensor(self._input, np.array(list(texts), dtype=object))
        it.invoke()
        outs = {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
        # Converted tuple outputs are named Identity, Identity_1, Identity_2.
        return [outs[k] for k in sorted(outs, key=lambda n: (len(n), n))]


def check_invariants(texts, outputs, cfg) -> list[str]:
    """Problems with the spec's invariants of ``outputs`` (features, mask, offsets)."""
    features, mask, offsets = (np.asarray(o) for o in outputs)
    b, s, d = len(texts), cfg.max_tokens, cfg.output_size
    want = [((b, s, d), np.float32), ((b, s), np.float32), ((b, s, 2), np.int32)]
    problems = [f"{name}: {o.shape} {o.dtype}, expected {shape} {dt.__name__}"
                for name, o, (shape, dt) in zip(("features", "mask", "offsets"),
                                                (features, mask, offsets), want)
                if o.shape != shape or o.dtype != dt]
    if problems:
        return problems
    for i, text in enumerate(texts):
        n = int(mask[i].sum())
        if not np.array_equal(mask[i], (np.arange(s) < n).astype(np.float32)):
            problems.append(f"string {i}: mask is not a prefix of ones")
        real, pad = offsets[i, :n], offsets[i, n:]
        if n and not (np.all(real[:, 0] < real[:, 1]) and real[0, 0] >= 0
                      and real[-1, 1] <= len(text) and np.all(real[1:, 0] >= real[:-1, 1])):
            problems.append(f"string {i}: token offsets out of order or outside the input")
        if pad.any() or features[i, n + cfg.window:].any():
            problems.append(f"string {i}: padding is not zero")
        if not np.all(np.isfinite(features[i])):
            problems.append(f"string {i}: non-finite features")
        ids = features[i, :n, 0]
        if cfg.method == "hashid" and not (np.all(ids == np.floor(ids)) and np.all(ids >= 1)
                                           and np.all(ids <= cfg.feature_size - 1)):
            problems.append(f"string {i}: hashid ids outside 1 .. {cfg.feature_size - 1}")
    return problems


def _bit_equal(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
        a.view(np.uint32), b.view(np.uint32))


def compare(runners: Runners, texts) -> list[str]:
    """Mismatches between reference, TF op and TFLite kernel on one batch, plus invariant problems."""
    want = runners.reference(texts)
    problems = check_invariants(texts, want, runners.cfg)
    for name, got in (("tf_op", runners.tf_op(texts)), ("tflite", runners.tflite(texts))):
        for out_name, g, w in zip(("features", "mask", "offsets"), got, want):
            if not _bit_equal(g, w):
                bad = [i for i in range(len(texts)) if i >= len(g) or not _bit_equal(g[i], w[i])]
                problems.append(f"{name} {out_name} differs from the reference for strings "
                                f"{bad[:5]} (first: {texts[bad[0]][:60]!r})" if bad else
                                f"{name} {out_name}: shape {np.shape(g)} != {np.shape(w)}")
    return problems


def run_corpus(n: int = DEFAULT_CASES, seed: int = DEFAULT_SEED, huge: bool = False,
               configs=None, small_subset: int = 600) -> dict:
    """Run the corpus through the three implementations (see module doc).

    The first config gets every string; the others get the fixed cases and the
    first ``small_subset`` random ones (their reference is slower); ``huge``
    adds the 1 MiB strings of ``hostile_text.huge_cases`` on the first config.

    Returns:
      {"strings": distinct strings run, "runs": (string, config) pairs,
      "bytes": input bytes run, "configs": K, "problems": [messages]}.
    """
    configs = configs or list(CONFIG_VECTORS)
    texts = corpus_strings(n, seed)
    rng = random.Random(seed)
    stats = {"strings": len(texts), "runs": 0, "bytes": 0, "configs": len(configs), "problems": []}
    for k, name in enumerate(configs):
        runners = Runners(CONFIG_VECTORS[name])
        todo = texts if k == 0 else texts[:len(hostile_text.fixed_cases()) + small_subset]
        i = 0
        while i < len(todo):
            batch = todo[i:i + rng.randint(1, 256)]
            i += len(batch)
            stats["problems"] += [f"{name}: {p}" for p in compare(runners, batch)]
            stats["runs"] += len(batch)
            stats["bytes"] += sum(map(len, batch))
        if huge and k == 0:
            big = [t for _, t in hostile_text.huge_cases()]
            stats["strings"] += len(big)
            for j in range(0, len(big), 4):
                stats["problems"] += [f"{name} (1 MiB): {p}" for p in compare(runners, big[j:j + 4])]
            stats["runs"] += len(big)
            stats["bytes"] += sum(map(len, big))
    return stats


def kernel_canary(overstate: int) -> int:
    """Call the TFLite kernel's ``invoke`` directly through ctypes on one string tensor
    ("hello world", S=4, F=8) whose ``bytes`` field (and last string offset) claims
    ``overstate`` more bytes than its malloc'ed buffer holds; prints the status, mask and
    offsets. With 0 the kernel must succeed; with more, an ASan build of the kernel must
    report a heap-buffer-overflow in our own code (the kernel trusts the runtime's
    ``bytes``): the proof that our library is instrumented inside this process.

    Structs per ``custom_ops/tflite_abi.h`` (LP64): TfLiteRegistration.invoke at +24,
    TfLiteTensor 112 bytes, TfLiteNode 80 bytes, TfLiteContext's leading fields.
    """
    import ctypes

    from ondevice_nlp import ops

    vp, i32 = ctypes.c_void_p, ctypes.c_int

    class Tensor(ctypes.Structure):
        _fields_ = [("type", i32), ("data", vp), ("dims", vp), ("scale", ctypes.c_float),
                    ("zero_point", ctypes.c_int32), ("allocation_type", i32),
                    ("bytes", ctypes.c_size_t), ("allocation", vp), ("name", vp), ("delegate", vp),
                    ("buffer_handle", i32), ("data_is_stale", ctypes.c_bool),
                    ("is_variable", ctypes.c_bool), ("quantization_type", i32),
                    ("quantization_params", vp), ("sparsity", vp), ("dims_signature", vp)]

    class Node(ctypes.Structure):
        _fields_ = [("inputs", vp), ("outputs", vp), ("intermediates", vp), ("temporaries", vp),
                    ("user_data", vp), ("builtin_data", vp), ("custom_initial_data", vp),
                    ("custom_initial_data_size", i32), ("delegate", vp),
                    ("might_have_side_effect", ctypes.c_bool)]

    class Context(ctypes.Structure):  # ReportError null: the kernel then reports nothing
        _fields_ = [("tensors_size", ctypes.c_size_t), ("GetExecutionPlan", vp), ("tensors", vp),
                    ("impl_", vp), ("ResizeTensor", vp), ("ReportError", vp), ("rest", vp * 20)]

    assert (ctypes.sizeof(Tensor), Tensor.bytes.offset, ctypes.sizeof(Node)) == (112, 40, 80)
    reg = ops.load_tflite_library().OndeviceNlp_ProjectionRegistration()
    invoke = ctypes.CFUNCTYPE(i32, vp, vp)(vp.from_address(reg + 24).value)
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = vp, [ctypes.c_size_t]
    libc.free.argtypes = [vp]
    seq, feat, text = 4, 8, b"hello world"
    real = 12 + len(text)
    buf = libc.malloc(real)  # exactly the string buffer: [count, start, end] + text
    ctypes.memmove(buf, np.array([1, 12, real + overstate], np.int32).tobytes() + text, real)
    config = np.array([1, 0, feat, 2, 0, seq, 0], np.int32)
    outs = [np.zeros((1, seq, feat), np.float32), np.zeros((1, seq), np.float32),
            np.zeros((1, seq, 2), np.int32)]
    keep = []

    def dims(values):
        keep.append((i32 * (1 + len(values)))(len(values), *values))
        return ctypes.addressof(keep[-1])

    # type: 5 string, 2 int32, 1 float32; allocation: 4 dynamic, 1 mmap'ed constant, 2 arena
    tensors = (Tensor * 5)(
        Tensor(type=5, data=buf, dims=dims([1]), allocation_type=4, bytes=real + overstate),
        Tensor(type=2, data=config.ctypes.data, dims=dims([7]), allocation_type=1, bytes=28),
        *(Tensor(type=t, data=o.ctypes.data, dims=dims(list(o.shape)), allocation_type=2,
                 bytes=o.nbytes) for t, o in zip((1, 1, 2), outs)))
    node = Node(inputs=dims([0, 1]), outputs=dims([2, 3, 4]))
    context = Context(tensors_size=5, tensors=ctypes.addressof(tensors))
    status = invoke(ctypes.byref(context), ctypes.byref(node))
    libc.free(buf)
    print(f"status={status} mask={outs[1].tolist()} offsets={outs[2].tolist()}", flush=True)
    return 0 if status == 0 else 1


def _atheris_main(argv: list[str]) -> None:
    import atheris  # noqa: PLC0415  (optional dependency)

    with atheris.instrument_imports(include=["ondevice_nlp.projection_ref"]):
        from ondevice_nlp import projection_ref  # noqa: F401
    runners = Runners(CONFIG_VECTORS["minhash-small"])

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        texts = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)) for _ in range(fdp.ConsumeIntInRange(1, 3))]
        texts.append(fdp.ConsumeBytes(fdp.remaining_bytes()))
        problems = compare(runners, texts)
        if problems:
            raise AssertionError("; ".join(problems))

    if "-seed_corpus" in argv:  # hostile corpus as libFuzzer seeds in ./projection-seeds
        argv = [a for a in argv if a != "-seed_corpus"]
        seeds = Path.cwd() / "projection-seeds"
        seeds.mkdir(exist_ok=True)
        for i, t in enumerate(corpus_strings(300)):
            (seeds / f"seed{i:04d}").write_bytes(t)
        argv.append(str(seeds))
    atheris.Setup([sys.argv[0]] + argv, one_input)
    atheris.Fuzz()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["atheris"]:
        _atheris_main(argv[1:])
        return 0
    if argv[:1] == ["kernel-canary"] and len(argv) == 2:
        return kernel_canary(int(argv[1]))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["corpus", "atheris"])
    p.add_argument("--cases", type=int, default=DEFAULT_CASES, help="random strings (default %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--huge", action="store_true", help="add the 1 MiB strings")
    p.add_argument("--configs", default=",".join(CONFIG_VECTORS),
                   help=f"comma list from {list(CONFIG_VECTORS)}")
    a = p.parse_args(argv)
    configs = [c for c in a.configs.split(",") if c]
    unknown = sorted(set(configs) - set(CONFIG_VECTORS))
    if unknown:
        p.error(f"unknown config(s) {unknown}")
    stats = run_corpus(a.cases, a.seed, a.huge, configs)
    for problem in stats["problems"][:50]:
        print("MISMATCH", problem, file=sys.stderr)
    print(f"corpus: strings={stats['strings']} runs={stats['runs']} configs={stats['configs']} "
          f"bytes={stats['bytes']} mismatches={len(stats['problems'])}", flush=True)
    return 1 if stats["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
