"""Hostile input for the projection op (issue 5): a seeded differential fuzz of the NumPy
reference, the TF op and the TFLite kernel over a few thousand nasty strings; the same
corpus with both op libraries built with ASan + UBSan and loaded into Python; and a short
atheris (libFuzzer) run when atheris is installed.

The corpus and the comparison live in ``tools/hostile_text.py`` and
``tools/fuzz_projection.py`` (also runnable by hand, see their docs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import fuzz_projection as fz  # noqa: E402
import hostile_text  # noqa: E402

pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                     "UndefinedBehaviorSanitizer", "AddressSanitizer: CHECK failed")


def test_corpus_covers_every_category():
    cats = [c for c, _ in hostile_text.cases(fz.DEFAULT_SEED, fz.DEFAULT_CASES)]
    assert set(cats) == set(hostile_text.CATEGORIES)
    texts = fz.corpus_strings()
    assert len(texts) >= 3000
    assert any(b"\x00" in t for t in texts) and b"" in texts
    assert any(len(t) == hostile_text.MIB for _, t in hostile_text.huge_cases())
    invalid = sum(1 for t in texts if _is_invalid_utf8(t))
    assert invalid > 500, invalid  # plenty of ill-formed UTF-8
    # deterministic: same seed, same corpus
    assert fz.corpus_strings(50, 3) == fz.corpus_strings(50, 3)
    with pytest.raises(ValueError, match="unknown category"):
        hostile_text.case(__import__("random").Random(0), "nope")


def _is_invalid_utf8(t: bytes) -> bool:
    try:
        t.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_reference_tf_op_and_tflite_agree_on_hostile_corpus():
    """3,270 strings on the first config, 870 on seven more (two of config version 2, with
    token shape features, one of version 3, with letter n-grams, one of version 4, with a word
    dictionary): bit-exact, valid shapes, no crash. (The 1 MiB strings run in the sanitizer
    test below.)"""
    stats = fz.run_corpus()
    print(stats)
    assert stats["problems"] == []
    assert stats["strings"] >= 3000 and stats["configs"] == 8
    assert stats["runs"] >= 8000
    assert {v[0] for v in fz.CONFIG_VECTORS.values()} == {1, 2, 3, 4}  # every config version


def test_comparison_catches_a_wrong_kernel(monkeypatch):
    """The differential check is not vacuous: one flipped bit or a bad shape is reported."""
    runners = fz.Runners(fz.CONFIG_VECTORS["ternary"])
    texts = [b"hello world", "สวัสดี".encode()]
    assert fz.compare(runners, texts) == []
    good = runners.tflite

    def flipped(t):
        out = [np.array(o) for o in good(t)]
        out[0].view(np.uint32)[1, 0, 3] ^= 1
        return out

    monkeypatch.setattr(runners, "tflite", flipped)
    problems = fz.compare(runners, texts)
    assert len(problems) == 1 and "tflite features" in problems[0] and "[1]" in problems[0]
    monkeypatch.setattr(runners, "tflite", lambda t: [o[:1] for o in good(t)])
    assert any("tflite" in p for p in fz.compare(runners, texts))
    bad_mask = [np.array(o) for o in runners.reference(texts)]
    bad_mask[1][0, -1] = 1.0
    assert any("mask" in p for p in fz.check_invariants(texts, bad_mask, runners.cfg))


# --------------------------------------------------------------------------
# ASan + UBSan builds of the TF op and the TFLite kernel, inside Python.
# --------------------------------------------------------------------------

def _sanitizer_runtime() -> tuple[str, str] | None:
    """(libasan.so, libstdc++.so) of g++, or None when g++ cannot build with sanitizers."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        return None
    libs = []
    for name in ("libasan.so", "libstdc++.so"):
        path = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True,
                              text=True).stdout.strip()
        if not os.path.isabs(path) or not os.path.exists(path):
            return None
        libs.append(os.path.realpath(path))
    probe = subprocess.run([cxx, "-fsanitize=address,undefined", "-x", "c++", "-", "-o", os.devnull],
                           input="int main() { return 0; }", capture_output=True, text=True)
    return (libs[0], libs[1]) if probe.returncode == 0 else None


@pytest.fixture(scope="module")
def sanitized_ops():
    """ASan/UBSan builds of ``_projection_tf_op.so`` and ``_projection_tflite.so``.

    Built by tools/build_ops.py --sanitize into build/sanitize_ops (kept between runs;
    about 35 s of g++ the first time) and returned with the environment that loads them
    into a Python subprocess: ``LD_PRELOAD`` of g++'s libasan.so (the ASan runtime must
    come first in the process) and libstdc++.so (otherwise ASan's ``__cxa_throw``
    interceptor finds no real function: python does not link libstdc++, and TensorFlow
    throws C++ exceptions internally during tracing), ``detect_leaks=0`` (CPython and
    TensorFlow keep allocations until exit by design) and ``halt_on_error=1``.

    Only our two libraries are instrumented; ASan's interceptors (malloc, memcpy, ...)
    cover the whole process, so a bad access by our code into memory that TensorFlow or
    LiteRT allocated (string tensors, outputs) is caught too.
    """
    runtime = _sanitizer_runtime()
    if runtime is None:
        pytest.skip("g++ with ASan/UBSan runtimes (libasan, libubsan) is not available")
    import build_ops

    out = REPO / "build" / "sanitize_ops"
    libs = build_ops.build(out_dir=out, sanitize=True, targets=("tf", "tflite"))
    for lib in libs.values():  # really instrumented
        if shutil.which("nm"):
            syms = subprocess.run(["nm", "-D", "--undefined-only", str(lib)],
                                  capture_output=True, text=True).stdout
            assert "__asan_report_load" in syms and "__ubsan_handle_" in syms, lib
    env = dict(os.environ, LD_PRELOAD=" ".join(runtime), ONDEVICE_NLP_LIB_DIR=str(out),
               ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_odr_violation=0",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return out, env


def _assert_no_sanitizer_report(proc: subprocess.CompletedProcess):
    for marker in SANITIZER_MARKERS:
        assert marker not in proc.stderr, proc.stderr[-6000:]


def test_sanitizer_catches_a_bad_read_in_our_kernel(sanitized_ops):
    """Canary: the ASan-built kernel, loaded into Python, is really checked. Its invoke is
    called through ctypes on a string tensor whose byte count is true (runs clean) or
    overstated by 5 bytes (the kernel trusts it and reads past the malloc'ed buffer: ASan
    must stop the process with a heap-buffer-overflow in our projection code)."""
    _, env = sanitized_ops
    run = [sys.executable, str(REPO / "tools" / "fuzz_projection.py"), "kernel-canary"]
    clean = subprocess.run(run + ["0"], env=env, capture_output=True, text=True, timeout=120)
    _assert_no_sanitizer_report(clean)
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert "status=0 mask=[[1.0, 1.0, 0.0, 0.0]] offsets=[[[0, 5], [6, 11], [0, 0], [0, 0]]]" \
        in clean.stdout
    bad = subprocess.run(run + ["5"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "status=" not in bad.stdout
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in bad.stderr, bad.stderr[-3000:]
    assert "ondevice_nlp::projection::" in bad.stderr  # the report points into our code


def test_sanitized_tf_op_and_tflite_kernel_over_hostile_corpus(sanitized_ops):
    """Both op libraries built with -fsanitize=address,undefined, loaded into Python through
    ``ondevice_nlp.ops`` (ONDEVICE_NLP_LIB_DIR), run over 1,270 hostile strings with six
    configs (two of version 2, with shape features, one of version 3, with letter n-grams) and
    the 1 MiB strings: no sanitizer report, still bit-exact with the reference."""
    out, env = sanitized_ops
    code = ("import sys, fuzz_projection as fz; from ondevice_nlp import ops; "
            "print('libraries', ops.TF_OP_LIBRARY, ops.TFLITE_LIBRARY); "
            "sys.exit(fz.main(['corpus', '--cases', '1000', '--huge', "
            "'--configs', 'minhash-base,ternary,minhash-shape,ternary-shape,hashid,minhash-ngram']))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600, cwd=str(REPO / "tools"))
    _assert_no_sanitizer_report(proc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert f"libraries {out / '_projection_tf_op.so'} {out / '_projection_tflite.so'}" in proc.stdout
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("corpus: ") and summary.endswith("mismatches=0"), proc.stdout
    counts = dict(kv.split("=") for kv in summary.split()[1:])
    assert int(counts["strings"]) >= 1250 and int(counts["configs"]) == 6


# --------------------------------------------------------------------------
# atheris (libFuzzer), when installed.
# --------------------------------------------------------------------------

def test_atheris_differential_fuzz(tmp_path):
    """1,000 coverage-guided inputs (seeded with the hostile corpus), reference-instrumented.

    The fuzzing process holds TensorFlow, the TFLite interpreter and our op: about 2.1 GB
    resident before the first input, over libFuzzer's default 2048 MB out-of-memory limit
    (a clean-clone CI run stopped on it at input 770), so the limit is 6 GB: a leak still
    stops it."""
    pytest.importorskip("atheris")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "fuzz_projection.py"), "atheris", "-runs=1000",
         "-seed=1", "-max_len=2048", "-rss_limit_mb=6144", f"-artifact_prefix={tmp_path}/",
         "-seed_corpus"],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                 PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])))
    assert proc.returncode == 0, proc.stderr[-6000:]
    done = re.search(r"Done (\d+) runs", proc.stderr)  # libFuzzer may overshoot -runs a little
    assert done and int(done.group(1)) >= 1000, proc.stderr[-3000:]
    assert not list(tmp_path.glob("crash-*"))
