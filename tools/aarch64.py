#!/usr/bin/env python3
"""Cross-compile the custom op for aarch64 and prove it bit-identical to x86 under qemu-user.

Needs Debian's ``g++-aarch64-linux-gnu`` and ``qemu-user`` (``qemu-aarch64``), and
network access to the Debian archive and PyPI for ``setup``. Nothing is installed
system-wide: everything goes into a cache folder (default ``build/aarch64``, or
``$ONDEVICE_NLP_AARCH64_CACHE``; about 1.3 GB unpacked, mostly TensorFlow's library).

Subcommands::

    python tools/aarch64.py setup            # aarch64 sysroot + wheels (once, ~400 MB download)
    python tools/aarch64.py build            # cross-compile the TFLite kernel + a static driver
    python tools/aarch64.py check [MODEL.tflite ...] [--texts FILE] [--op-resolvers LIST] [--json]
    python tools/aarch64.py python -m ondevice_nlp.cli benchmark MODEL.tflite --runs 5 --no-memory

What ``setup`` fetches:

* an aarch64 **Python 3.11** from Debian bookworm (``python3.11-minimal``,
  ``libpython3.11-stdlib`` and their library closure, arm64 ``.deb`` files
  downloaded with a private apt configuration: no ``dpkg --add-architecture``,
  no root) unpacked into ``CACHE/sysroot``;
* aarch64 wheels of ``ai-edge-litert`` (same version as here) and ``numpy``
  (same version as here) with their dependencies, installed with ``pip install
  --target CACHE/site --platform manylinux_2_27_aarch64 --only-binary=:all:``;
* ``libtensorflow_cc.so.2`` and ``libtensorflow_framework.so.2`` from the
  aarch64 ``tensorflow`` wheel (same version as here): our kernel calls
  ``tflite::MutableOpResolver::AddCustom`` from there, exactly as on x86
  (ai-edge-litert does not export it; see ``custom_ops/tflite_abi.h``);
* a fake ARM ``/proc/cpuinfo`` (a Cortex-A76: implementer 0x41, part 0xd0b,
  ``asimddp``) at ``CACHE/sysroot/proc/cpuinfo``. qemu-user 7.2 passes
  ``/proc/cpuinfo`` of the x86 host through, which LiteRT's cpuinfo cannot
  parse as ARM; qemu's ``-L`` prefix is looked up first for every absolute path
  the guest opens, so the guest reads this file instead.

The guest runs with ``QEMU_CPU=cortex-a76`` (qemu's default ``max`` CPU
advertises SVE2/i8mm/SME paths of XNNPACK that qemu 7.2 does not emulate
exactly for int8).

What ``check`` proves (exit status 1 when anything differs):

1. **Core**: a static aarch64 build of ``custom_ops/tests/sanitize_driver.cc``
   (core + TFLite kernel behind a fake interpreter, no TensorFlow) runs under
   qemu in ``checksum`` mode on a corpus (the benchmark's multi-script sample,
   random bytes, invalid UTF-8) for MinHash and ternary configs with window 0
   and 1, MinHash with token shape features and a hashid config; its checksums must equal those of the NumPy reference
   (``ondevice_nlp.projection_ref``) computed on x86.
2. **Models**: each model (``.tflite`` with our op; ``check`` with no model
   builds a float and an int8 test model) and its projection-only slice run in
   ai-edge-litert on x86 and on aarch64 (qemu) over the benchmark's sample
   utterances (or ``--texts``), batch 1, outputs compared as bytes. The
   slice's features/mask/offsets must be bit-identical and equal the NumPy
   reference. Full models run once per kernel set of ``--op-resolvers``
   (default ``default,reference``): with TFLite's reference kernels
   (``reference``) every output must be bit-identical; with the optimized
   kernels (``default``: XNNPACK delegate + builtin kernels, what an app runs;
   ``no-delegates``) the number of bit-identical utterances is reported only:
   the builtin optimized int8 kernels requantize with other rounding on
   aarch64 (see README.md, "aarch64").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get("ONDEVICE_NLP_AARCH64_CACHE", REPO / "build" / "aarch64"))
DEFAULT_OP_RESOLVERS = ("default", "reference")
"""TFLite kernel sets of the full-model runs of ``check`` (``ondevice_nlp.ops.OP_RESOLVERS``)."""
CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
QEMU_CPU = "cortex-a76"
PY_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6")
# Debian packages of the closure that a Python interpreter never loads (perl via mailcap, dpkg).
SKIP_DEBS = {"dpkg", "install-info", "perl", "perl-base", "perl-modules-5.36", "libperl5.36", "tar",
             "mailcap", "mime-support", "libgdbm-compat4"}
MANYLINUX = ("manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
FAKE_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
    "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
    for i in range(4))


class SetupError(RuntimeError):
    """A missing tool, a failed download or a failed cross-compilation."""


def missing_tools() -> list[str]:
    """Names of the required executables that are not on PATH."""
    return [t for t in (CXX, QEMU) if shutil.which(t) is None]


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SetupError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                         f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def _host_version(*dists: str) -> str:
    """Installed version of the first of ``dists`` that is installed here."""
    from importlib.metadata import PackageNotFoundError, version
    for dist in dists:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    raise SetupError(f"none of {dists} is installed in {sys.executable}")


# ---------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------

def _apt_env(cache: Path) -> dict:
    apt = cache / "apt"
    for d in ("lists/partial", "archives/partial", "sources"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "status").touch()
    for src in Path("/etc/apt/sources.list.d").glob("*.sources"):
        shutil.copy(src, apt / "sources" / src.name)
    if Path("/etc/apt/sources.list").is_file():
        shutil.copy("/etc/apt/sources.list", apt / "sources" / "main.list")
    conf = apt / "apt.conf"
    conf.write_text("\n".join([
        'APT::Architecture "arm64";', 'APT::Architectures { "arm64"; };',
        f'Dir::State::Lists "{apt}/lists";', f'Dir::State::status "{apt}/status";',
        f'Dir::Cache "{apt}";', 'Dir::Etc::SourceList "/dev/null";',
        f'Dir::Etc::SourceParts "{apt}/sources";', 'Dir::Etc::Preferences "/dev/null";',
        'Dir::Etc::PreferencesParts "/dev/null";', ""]))
    return dict(os.environ, APT_CONFIG=str(conf))


def setup_sysroot(cache: Path) -> Path:
    """Download Debian arm64 Python 3.11 and its libraries into CACHE/sysroot."""
    sysroot = cache / "sysroot"
    python = sysroot / "usr" / "bin" / "python3.11"
    if not python.exists():
        env = _apt_env(cache)
        _run(["apt-get", "update"], env=env)
        deps = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                     "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                     *PY_PACKAGES], env=env).stdout
        names = sorted({ln.strip() for ln in deps.splitlines()
                        if ln and not ln.startswith((" ", "<"))} - SKIP_DEBS)
        debs = cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", *names], env=env, cwd=debs)
        tmp = Path(tempfile.mkdtemp(prefix="sysroot.", dir=cache))
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        if sysroot.exists():
            shutil.rmtree(sysroot)
        tmp.rename(sysroot)
    (sysroot / "proc").mkdir(exist_ok=True)
    (sysroot / "proc" / "cpuinfo").write_text(FAKE_CPUINFO)
    return sysroot


def setup_site(cache: Path) -> Path:
    """aarch64 wheels (pip --target) + TensorFlow's two shared libraries."""
    site = cache / "site"
    pip = [sys.executable, "-m", "pip"]
    plat = [a for p in MANYLINUX for a in ("--platform", p)]
    plat += ["--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:"]
    litert, numpy = _host_version("ai-edge-litert"), _host_version("numpy")
    stamp = site / ".ondevice_nlp_site.json"
    want = {"ai-edge-litert": litert, "numpy": numpy, "tensorflow": _host_version("tensorflow-cpu", "tensorflow")}
    try:
        if json.loads(stamp.read_text()) == want:
            return site
    except (OSError, ValueError):
        pass
    if site.exists():
        shutil.rmtree(site)
    _run(pip + ["install", "-q", "--no-warn-conflicts", "--target", str(site), *plat,
                f"ai-edge-litert=={litert}", f"numpy=={numpy}"])
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    _run(pip + ["download", "-q", "--no-deps", "-d", str(wheels), *plat,
                f"tensorflow=={want['tensorflow']}"])
    (whl,) = [w for w in wheels.glob(f"tensorflow-{want['tensorflow']}-*aarch64.whl")]
    with zipfile.ZipFile(whl) as z:
        for member in ("tensorflow/libtensorflow_cc.so.2", "tensorflow/libtensorflow_framework.so.2"):
            z.extract(member, site)
    stamp.write_text(json.dumps(want))
    return site


def setup(cache: Path = DEFAULT_CACHE) -> None:
    """Everything ``build`` and ``check`` need (idempotent).

    Raises:
      SetupError: a tool is missing or a download failed.
    """
    missing = missing_tools()
    if missing:
        raise SetupError(f"missing {', '.join(missing)}: apt-get install g++-aarch64-linux-gnu "
                         "qemu-user")
    cache.mkdir(parents=True, exist_ok=True)
    setup_sysroot(cache)
    setup_site(cache)


# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------

def _newer(out: Path, inputs) -> bool:
    return out.exists() and out.stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in inputs)


def build(cache: Path = DEFAULT_CACHE) -> tuple[Path, Path]:
    """Cross-compile into CACHE/stage; returns (package dir for PYTHONPATH, static driver).

    The package dir holds a copy of ``ondevice_nlp`` (Python files) whose
    ``_lib/_projection_tflite.so`` is the aarch64 kernel, linked against the
    aarch64 ``libtensorflow_cc.so.2`` of ``setup``. Without ``tools/`` next to
    it, ``ondevice_nlp.ops`` uses that library as is (no rebuild).

    Raises:
      SetupError: ``setup`` not done, or a compiler error.
    """
    src = REPO / "custom_ops"
    site = cache / "site"
    tf_dir = site / "tensorflow"
    if not (tf_dir / "libtensorflow_cc.so.2").exists():
        raise SetupError(f"{tf_dir} has no libtensorflow_cc.so.2: run `tools/aarch64.py setup`")
    stage = cache / "stage"
    pkg = stage / "pkg"
    sources = [src / "projection.cc", src / "projection.h", src / "tflite_abi.h",
               src / "tflite_kernel.cc", src / "tests" / "sanitize_driver.cc", Path(__file__)]
    if pkg.exists():
        shutil.rmtree(pkg)
    shutil.copytree(REPO / "ondevice_nlp", pkg / "ondevice_nlp",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
    lib = stage / "_projection_tflite.so"
    driver = stage / "projection_driver"
    flags = ["-std=c++17", "-D_GLIBCXX_USE_CXX11_ABI=1", "-O2", "-Wall", "-Wextra", "-I", str(src)]
    jobs = []
    if not _newer(lib, sources):
        jobs.append([CXX, *flags, "-fPIC", "-shared", "-fvisibility=hidden",
                     "-fvisibility-inlines-hidden", str(src / "projection.cc"),
                     str(src / "tflite_kernel.cc"), "-o", str(lib), "-L", str(tf_dir),
                     "-l:libtensorflow_cc.so.2", f"-Wl,-rpath,{tf_dir}",
                     f"-Wl,-rpath-link,{tf_dir}"])
    if not _newer(driver, sources):
        jobs.append([CXX, *flags, "-static", str(src / "projection.cc"),
                     str(src / "tflite_kernel.cc"), str(src / "tests" / "sanitize_driver.cc"),
                     "-o", str(driver)])
    procs = [subprocess.Popen(j, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for j in jobs]
    for j, p in zip(jobs, procs):
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SetupError(f"cross-compilation failed: {' '.join(j)}\n{out[-3000:]}")
    (pkg / "ondevice_nlp" / "_lib").mkdir(exist_ok=True)
    shutil.copy(lib, pkg / "ondevice_nlp" / "_lib" / lib.name)
    return pkg, driver


# ---------------------------------------------------------------------------
# Running under qemu
# ---------------------------------------------------------------------------

def qemu_env(cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LD_"))}
    env.update(QEMU_CPU=QEMU_CPU, QEMU_LD_PREFIX=str(cache / "sysroot"), PYTHONNOUSERSITE="1",
               PYTHONSAFEPATH="1",  # -m must not import the x86 checkout from the cwd
               PYTHONPATH=f"{cache / 'stage' / 'pkg'}{os.pathsep}{cache / 'site'}",
               TF_CPP_MIN_LOG_LEVEL="3")
    return env


def guest_python(cache: Path, args, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the aarch64 Python with ``args`` under qemu-aarch64 (output captured)."""
    python = cache / "sysroot" / "usr" / "bin" / "python3.11"
    return subprocess.run([QEMU, str(python), *map(str, args)], capture_output=True, text=True,
                          env=qemu_env(cache), timeout=timeout)


def dump_outputs(model_path: str, texts_file: str, out_file: str,
                 op_resolver: str = "default") -> None:
    """Run a model over utterances (batch 1) and save every output (``.npz``).

    Runs on either architecture: imports only numpy and ondevice_nlp.ops. Keys
    are ``"{text index}/{output index}"``; ``op_resolver``: TFLite kernels
    (``ops.OP_RESOLVERS``).
    """
    import numpy as np

    from ondevice_nlp import ops

    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    interp = ops.make_interpreter(model_path=model_path, num_threads=1, op_resolver=op_resolver)
    inp = interp.get_input_details()[0]
    if list(inp["shape"]) != [1]:
        interp.resize_tensor_input(inp["index"], [1])
    interp.allocate_tensors()
    outs = {}
    for i, t in enumerate(texts):
        interp.set_tensor(inp["index"], np.array([t.encode("utf-8")], dtype=object))
        interp.invoke()
        for j, d in enumerate(interp.get_output_details()):
            outs[f"{i}/{j}"] = interp.get_tensor(d["index"])
    np.savez(out_file, **outs)


# ---------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------

def _checksum(array) -> int:
    """Checksum of sanitize_driver: sum of uint32 words w_i * (2i + 1) mod 2^64."""
    import numpy as np
    words = np.ascontiguousarray(array).view(np.uint32).reshape(-1).astype(np.uint64)
    weights = np.arange(words.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return int((words * weights).sum(dtype=np.uint64))


def _string_buffer(texts) -> bytes:
    """TFLite string tensor buffer: count, count + 1 offsets, bytes."""
    import numpy as np
    offsets = [4 * (len(texts) + 2)]
    for t in texts:
        offsets.append(offsets[-1] + len(t))
    return np.array([len(texts)] + offsets, np.int32).tobytes() + b"".join(texts)


def corpus(seed: int = 0) -> list[bytes]:
    """Multi-script utterances, random bytes and invalid UTF-8."""
    from ondevice_nlp.benchmark import DEFAULT_TEXTS
    rng = random.Random(seed)
    texts = [t.encode("utf-8") for t in DEFAULT_TEXTS]
    texts += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(20)]
    texts += [b"\xff\xfe caf\xc3\xa9 \xed\xa0\x80 \xf4\x90\x80\x80 ok", b"", b"   ", b"A" * 5000]
    return texts


def check_core(cache: Path, driver: Path) -> list[dict]:
    """Driver checksums under qemu vs the NumPy reference on x86, per config."""
    from ondevice_nlp.projection_ref import ProjectionConfig, project, word_dictionary

    texts = corpus()
    results = []
    # a word dictionary (config version 4) for the corpus's Thai utterances
    words, word_len = word_dictionary(["ตั้ง", "ปลุก", "ตอน", "หก", "โมง", "เช้า", "พรุ่งนี้", "ที่",
                                       "กรุงเทพ", "ฝน", "จะ", "ตก", "ไหม", "ก"])
    for cfg in (ProjectionConfig("minhash", 1024, 64, 0, 64, 0),
                ProjectionConfig("minhash", 256, 16, 1, 32, 7),
                ProjectionConfig("ternary", 128, 1, 0, 64, 3),
                ProjectionConfig("ternary", 64, 1, 1, 16, 0),
                ProjectionConfig("minhash", 1024, 64, 0, 64, 0, shape=1),
                ProjectionConfig("hashid", 8000, 1, 0, 64, 0),
                ProjectionConfig("minhash", 1024, 64, 0, 64, 0, shape=1, ngram=4),
                ProjectionConfig("ternary", 128, 1, 0, 64, 3, words=words, word_len=word_len),
                ProjectionConfig("minhash", 256, 16, 1, 32, 7, shape=1, words=words,
                                 word_len=word_len)):
        with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
            f.write(cfg.to_vector().tobytes() + _string_buffer(texts))
        try:
            proc = subprocess.run([QEMU, str(driver), "checksum", f.name], capture_output=True,
                                  text=True, env=qemu_env(cache), timeout=600)
        finally:
            os.unlink(f.name)
        if proc.returncode != 0:
            raise SetupError(f"aarch64 driver failed: {proc.stderr[-2000:]}")
        got = {k: int(v) for k, v in (item.split("=") for item in proc.stdout.split())}
        feats, mask, offsets = project(texts, cfg)
        want = {"features": _checksum(feats), "mask": _checksum(mask),
                "offsets": _checksum(offsets)}
        results.append({"config": cfg.to_vector().tolist(), "texts": len(texts),
                        "equal": got == want, "aarch64": got, "reference": want})
    return results


def _test_models(tmp: Path) -> list[Path]:
    """A float and an int8 string-input model: projection -> dense -> outputs."""
    import numpy as np
    import tensorflow as tf

    from ondevice_nlp import ops
    from ondevice_nlp.benchmark import DEFAULT_TEXTS
    from ondevice_nlp.export import int8_converter
    from ondevice_nlp.projection_ref import ProjectionConfig

    cfg = ProjectionConfig("minhash", 256, 32, 0, 64, 0)
    rng = np.random.default_rng(0)
    w1 = tf.constant((0.1 * rng.standard_normal((256, 48))).astype(np.float32))
    w2 = tf.constant((0.1 * rng.standard_normal((48, 7))).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(text):
        feats, mask, offsets = ops.projection(text, cfg)
        h = tf.nn.relu(tf.einsum("bsf,fh->bsh", feats, w1))
        logits = tf.einsum("bsh,hk->bsk", h, w2)
        pooled = tf.reduce_sum(h * mask[..., None], 1) / (tf.reduce_sum(mask, 1, True) + 1.0)
        return {"tags": tf.argmax(logits, -1, output_type=tf.int32),
                "probs": tf.nn.softmax(tf.matmul(pooled, w2)), "offsets": offsets}

    paths = []
    for kind in ("float", "int8"):
        if kind == "int8":
            conv = int8_converter(serve.get_concrete_function(), [t.encode() for t in DEFAULT_TEXTS])
        else:
            conv = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
            conv.allow_custom_ops = True
        p = tmp / f"test_{kind}.tflite"
        p.write_bytes(conv.convert())
        paths.append(p)
    return paths


def _compare_npz(a: Path, b: Path) -> dict:
    """Compare two output dumps (keys ``"{text}/{output}"``).

    Returns ``equal`` (every array bit-identical), ``texts`` /
    ``identical_texts`` (utterances whose outputs are all bit-identical),
    ``same_decisions`` (integer outputs equal and the argmax over the last axis
    of every float output equal) with ``texts_with_other_decisions``,
    ``max_abs_diff`` (float outputs), ``differing`` (first keys).
    """
    import numpy as np
    with np.load(a) as x, np.load(b) as y:
        keys = sorted(x.files)
        if keys != sorted(y.files):
            return {"equal": False, "same_decisions": False, "arrays": len(keys),
                    "texts": 0, "identical_texts": 0, "differing": ["<different keys>"],
                    "max_abs_diff": None}
        diff, worst, flipped = [], 0.0, set()
        for k in keys:
            u, v = x[k], y[k]
            if u.dtype != v.dtype or u.shape != v.shape:
                diff.append(k)
                worst = float("inf")
                flipped.add(k.split("/")[0])
            elif u.tobytes() != v.tobytes():
                diff.append(k)
                if np.issubdtype(u.dtype, np.floating) and u.ndim:
                    worst = max(worst, float(np.abs(u.astype(np.float64) - v).max()))
                    if not (u.argmax(-1) == v.argmax(-1)).all():
                        flipped.add(k.split("/")[0])
                else:
                    flipped.add(k.split("/")[0])
        texts = {k.split("/")[0] for k in keys}
        bad = {k.split("/")[0] for k in diff}
        return {"equal": not diff, "same_decisions": not flipped, "arrays": len(keys),
                "texts": len(texts), "identical_texts": len(texts - bad),
                "texts_with_other_decisions": len(flipped),
                "differing": diff[:10], "max_abs_diff": worst}


def _float_compute(path: Path) -> bool:
    """True when a FULLY_CONNECTED/CONV/BATCH_MATMUL of the model computes in float32."""
    from ai_edge_litert import schema_py_generated as S

    from ondevice_nlp.benchmark import _op_name, parse_model
    m = parse_model(path.read_bytes(), str(path))
    sg = m.subgraphs[0]
    heavy = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL"}
    return any(_op_name(m, op) in heavy and sg.tensors[op.outputs[0]].type == S.TensorType.FLOAT32
               for op in sg.operators)


def _shape_key(a):
    return (a.ndim, a.dtype.str, a.shape)


def _equals_reference(npz: Path, cfg_vec: list[int], texts) -> bool:
    """Outputs of a projection-only model == ``projection_ref.project`` (bit for bit)."""
    import numpy as np

    from ondevice_nlp.projection_ref import ProjectionConfig, project
    cfg = ProjectionConfig.from_vector(cfg_vec)
    with np.load(npz) as y:
        for i, t in enumerate(texts):
            want = sorted(project([t.encode("utf-8")], cfg), key=_shape_key)
            got = sorted((y[f"{i}/{j}"] for j in range(3)), key=_shape_key)
            if not all(g.shape == w.shape and g.tobytes() == w.tobytes()
                       for g, w in zip(got, want)):
                return False
    return True


def check_models(cache: Path, models: list[Path], tmp: Path, texts=None,
                 op_resolvers=DEFAULT_OP_RESOLVERS) -> list[dict]:
    """Outputs of each model and its projection-only slice, x86 vs aarch64.

    The projection-only slices must be bit-identical (and equal the NumPy
    reference). Full models run once per kernel set of ``op_resolvers``
    (``ops.OP_RESOLVERS``): with TFLite's reference kernels (``"reference"``)
    every output must be bit-identical; with the optimized kernels
    (``"default"``, ``"no-delegates"``) how many utterances are bit-identical
    is reported (``equal``, ``identical_texts``, ``same_decisions``), not
    required: their int8 requantization rounds differently on x86 and aarch64
    (one int8 step on some values), and float kernels sum in another order.
    All aarch64 runs happen in one guest Python (one load of the libraries).
    """
    from ondevice_nlp.benchmark import DEFAULT_TEXTS, parse_model, projection_submodel

    texts = list(texts or DEFAULT_TEXTS)
    texts_file = tmp / "texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    todo: list[tuple[Path, Path | None, str]] = []  # (model, parent of a slice, op resolver)
    for k, model in enumerate(models):
        todo += [(model, None, r) for r in op_resolvers]
        sub = projection_submodel(parse_model(model.read_bytes(), str(model)))
        if sub is not None:
            sliced = tmp / f"{k}.{model.stem}.projection.tflite"
            sliced.write_bytes(sub)
            todo.append((sliced, model, "default"))
    outs = []
    for n, (path, _, resolver) in enumerate(todo):
        outs.append((tmp / f"{n}.x86.npz", tmp / f"{n}.arm.npz"))
        dump_outputs(str(path), str(texts_file), str(outs[-1][0]), resolver)
    args = [Path(__file__), "dump", texts_file]
    for (path, _, resolver), (_, arm) in zip(todo, outs):
        args += [path, resolver, arm]
    proc = guest_python(cache, args)
    if proc.returncode != 0:
        raise SetupError(f"aarch64 run failed:\n{proc.stderr[-3000:]}")
    results = []
    for (path, parent, resolver), (x86, arm) in zip(todo, outs):
        is_float = parent is None and _float_compute(path)
        res = {"model": str(parent or path),
               "what": "projection-only slice" if parent else "full model",
               "op_resolver": resolver, "float": is_float, **_compare_npz(x86, arm)}
        # optimized kernels of full models: reported, not required
        res["ok"] = res["equal"] if parent is not None or resolver == "reference" else None
        if parent is not None:
            res["equals_numpy_reference"] = _equals_reference(arm, _slice_config(path), texts)
            res["ok"] = res["ok"] and res["equals_numpy_reference"]
        results.append(res)
    return results


def _slice_config(path: Path) -> list[int]:
    """The config constant of a projection-only model: int32 [7] (version 1) or [8] (version 2)."""
    import numpy as np

    from ondevice_nlp.benchmark import parse_model
    m = parse_model(path.read_bytes(), str(path))
    for t in m.subgraphs[0].tensors:
        b = m.buffers[t.buffer]
        if b.data is not None and len(b.data) in (28, 32):
            vec = np.frombuffer(bytes(b.data), np.int32).tolist()
            if vec[0] == len(vec) - 6:  # version 1 has 7 entries, version 2 has 8
                return vec
    raise SetupError(f"{path}: no config constant")


def check(models: list[Path], cache: Path = DEFAULT_CACHE, texts=None,
          op_resolvers=DEFAULT_OP_RESOLVERS) -> dict:
    """The whole correctness run; ``result["ok"]`` is True when everything that
    must be identical is (see the module doc)."""
    setup(cache)
    _, driver = build(cache)
    with tempfile.TemporaryDirectory(prefix="aarch64_check.") as d:
        tmp = Path(d)
        if not models:
            models = _test_models(tmp)
        core = check_core(cache, driver)
        model_results = check_models(cache, [Path(m) for m in models], tmp, texts, op_resolvers)
    ok = all(c["equal"] for c in core) and all(m["ok"] is not False for m in model_results)
    return {"ok": ok, "qemu_cpu": QEMU_CPU, "core": core, "models": model_results}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup")
    sub.add_parser("build")
    c = sub.add_parser("check")
    c.add_argument("models", nargs="*", type=Path)
    c.add_argument("--json", action="store_true")
    c.add_argument("--texts", help="utterances for the model runs, one per line (default: "
                                   "the benchmark's built-in sample)")
    c.add_argument("--op-resolvers", default=",".join(DEFAULT_OP_RESOLVERS),
                   help="comma list of TFLite kernel sets for the full models, of default, "
                        "no-delegates, reference (default: %(default)s); reference outputs "
                        "must be bit-identical, the others are reported")
    d = sub.add_parser("dump", help="(internal) run models, save their outputs")
    d.add_argument("texts_json")
    d.add_argument("triples", nargs="+", metavar="MODEL OP_RESOLVER OUT.npz")
    sub.add_parser("python", help="run the aarch64 Python under qemu with the staged package; "
                                  "the remaining arguments go to it")
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    subcommands = {"setup", "build", "check", "dump", "python"}
    first = next((i for i, a in enumerate(argv) if a in subcommands), None)
    if first is not None and argv[first] == "python":
        argv, rest = argv[:first + 1], argv[first + 1:]
    args = p.parse_args(argv)
    args.args = rest
    if args.cmd == "dump":
        if len(args.triples) % 3:
            p.error("dump needs MODEL OP_RESOLVER OUT.npz triples")
        t = args.triples
        for model, resolver, out in zip(t[::3], t[1::3], t[2::3]):
            dump_outputs(model, args.texts_json, out, resolver)
        return 0
    sys.path.insert(0, str(REPO))
    try:
        if args.cmd == "setup":
            setup(args.cache)
            print(f"aarch64 sysroot and wheels ready in {args.cache}")
        elif args.cmd == "build":
            pkg, driver = build(args.cache)
            print(f"{pkg}\n{driver}")
        elif args.cmd == "python":
            proc = guest_python(args.cache, args.args)
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
            return proc.returncode
        else:
            texts = None
            if args.texts:
                from ondevice_nlp.benchmark import read_texts_file
                texts = read_texts_file(args.texts)
            from ondevice_nlp.ops import check_op_resolver
            try:
                resolvers = [check_op_resolver(r.strip()) for r in args.op_resolvers.split(",")
                             if r.strip()]
            except ValueError as e:
                p.error(str(e))
            res = check(args.models, args.cache, texts, resolvers)
            if args.json:
                print(json.dumps(res, indent=2))
            else:
                for c in res["core"]:
                    print(f"core  config={c['config']} texts={c['texts']}: "
                          f"{'bit-identical' if c['equal'] else 'DIFFERENT'} to the NumPy reference")
                for m in res["models"]:
                    ref = m.get("equals_numpy_reference")
                    extra = "" if ref is None else (
                        f", NumPy reference: {'equal' if ref else 'DIFFERENT'}")
                    if m["equal"]:
                        verdict = "bit-identical"
                    else:
                        verdict = (f"bit-identical for {m['identical_texts']}/{m['texts']} "
                                   f"utterances, max |float difference| {m['max_abs_diff']:.3g}, "
                                   f"other argmax/integer outputs for "
                                   f"{m['texts_with_other_decisions']}/{m['texts']} utterances "
                                   f"(first differing arrays: {m['differing'][:3]})")
                    kernels = "" if m["what"] != "full model" else f", {m['op_resolver']} kernels"
                    need = "" if m["ok"] is not None else " [reported, not required]"
                    print(f"model {m['model']} ({m['what']}{', float' if m['float'] else ''}"
                          f"{kernels}): {m['arrays']} arrays x86 vs aarch64: {verdict}{extra}{need}")
                print("OK" if res["ok"] else "FAILED")
            return 0 if res["ok"] else 1
    except SetupError as e:
        print(f"aarch64: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
