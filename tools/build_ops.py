#!/usr/bin/env python3
"""Build the OndeviceProjection shared libraries with g++.

Targets (sources in ``custom_ops/``):

* ``tf``: ``_projection_tf_op.so``, the TensorFlow op (``tf.load_op_library``),
  compiled and linked with ``tf.sysconfig.get_compile_flags()`` /
  ``get_link_flags()`` (C++17, ``_GLIBCXX_USE_CXX11_ABI=1``).
* ``tflite``: ``_projection_tflite.so``, the TFLite custom kernel. It includes
  no TensorFlow header (``custom_ops/tflite_abi.h`` declares the ABI) and links
  ``libtensorflow_cc.so.2`` only for ``tflite::MutableOpResolver::AddCustom``.
* ``driver``: ``sanitize_driver``, a standalone executable running the core
  and the TFLite kernel over nasty inputs (``custom_ops/tests``); needs no
  TensorFlow. Not built by default.

A target is rebuilt only when a source (or this script) is newer than the
output, or when the build settings changed (``--sanitize``, compiler,
TensorFlow installation); outputs are replaced atomically.

Usage::

    python tools/build_ops.py                       # tf + tflite into ondevice_nlp/_lib
    python tools/build_ops.py --sanitize --out /tmp/x --target driver

Exits non-zero and prints the compiler's message when a build fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "custom_ops"
DEFAULT_OUT = REPO / "ondevice_nlp" / "_lib"
STAMP_DIR = REPO / "build" / "build_ops"

SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer", "-g", "-O1"]
WARN_FLAGS = ["-Wall", "-Wextra"]


class BuildError(RuntimeError):
    """A compiler invocation failed; the message holds its command and output."""


class Target(NamedTuple):
    name: str                 # output file name
    sources: tuple[str, ...]  # relative to custom_ops/
    headers: tuple[str, ...]
    uses_tf: bool             # needs TensorFlow flags / libraries
    executable: bool = False


TARGETS = {
    "tf": Target("_projection_tf_op.so", ("projection.cc", "tf_op.cc"), ("projection.h",), True),
    "tflite": Target("_projection_tflite.so", ("projection.cc", "tflite_kernel.cc"),
                     ("projection.h", "tflite_abi.h"), True),
    "driver": Target("sanitize_driver",
                     ("projection.cc", "tflite_kernel.cc", "tests/sanitize_driver.cc"),
                     ("projection.h", "tflite_abi.h"), False, executable=True),
}
DEFAULT_TARGETS = ("tf", "tflite")


def _tf_dir() -> Path:
    """Directory of the installed ``tensorflow`` package, found without importing it."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("tensorflow is not installed in this Python environment "
                         f"({sys.executable}); it provides the headers and libraries")
    return Path(list(spec.submodule_search_locations)[0])


_TF_FLAGS: tuple[list[str], list[str], str] | None = None


def _tf_flags() -> tuple[list[str], list[str], str]:
    """(compile flags, link flags, library dir) from ``tf.sysconfig``.

    Queried in a child interpreter (the same Python) so that importing
    TensorFlow neither slows down nor logs into the calling process.
    """
    global _TF_FLAGS
    if _TF_FLAGS is None:
        code = ("import json, tensorflow as tf; s = tf.sysconfig; "
                "print(json.dumps([s.get_compile_flags(), s.get_link_flags(), s.get_lib()]))")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env)
        if proc.returncode != 0:
            raise BuildError(f"could not query tf.sysconfig with {sys.executable}:\n"
                             f"{proc.stderr[-3000:]}")
        cflags, lflags, lib = json.loads(proc.stdout.strip().splitlines()[-1])
        _TF_FLAGS = (list(cflags), list(lflags), str(lib))
    return _TF_FLAGS


def _cxx() -> str:
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise BuildError(f"C++ compiler {cxx!r} not found (set CXX or install g++)")
    return cxx


def _build_key(target: Target, sanitize: bool, cxx: str) -> dict:
    key = {"target": target.name, "sanitize": sanitize, "cxx": cxx,
           "cxxflags": os.environ.get("CXXFLAGS", "")}
    if target.uses_tf:
        tf_dir = _tf_dir()
        lib = tf_dir / "libtensorflow_framework.so.2"
        st = lib.stat() if lib.exists() else None
        key["tf"] = [str(tf_dir), st.st_size if st else None, st.st_mtime_ns if st else None]
    return key


def _stamp_path(out_dir: Path, target: Target) -> Path:
    """Build settings of an output: kept under build/ for the package's own
    _lib (which ships every file), next to the output elsewhere."""
    if out_dir.resolve() == DEFAULT_OUT.resolve():
        return STAMP_DIR / f"{target.name}.json"
    return out_dir / f".{target.name}.build.json"


def _is_up_to_date(out: Path, target: Target, key: dict) -> bool:
    if not out.exists():
        return False
    inputs = [SRC / s for s in target.sources + target.headers] + [Path(__file__).resolve()]
    newest = max(p.stat().st_mtime_ns for p in inputs)
    if out.stat().st_mtime_ns < newest:
        return False
    try:
        return json.loads(_stamp_path(out.parent, target).read_text()) == key
    except (OSError, ValueError):
        return False


# GCC cannot constant-evaluate some abseil function-pointer comparisons in
# TensorFlow's headers under these checks; tf_op.cc (TensorFlow glue only) is
# compiled without them, the shared core keeps the full set.
TF_GLUE_SANITIZE_EXCLUDE = ["-fno-sanitize=null,nonnull-attribute,returns-nonnull-attribute"]


def _commands(target: Target, out: Path, scratch: Path, sanitize: bool,
              cxx: str) -> list[list[str]]:
    """Compiler invocations producing ``out``; ``scratch`` is a private temp dir."""
    sources = [str(SRC / s) for s in target.sources]
    opt = SANITIZE_FLAGS if sanitize else ["-O2"]
    extra = shlex.split(os.environ.get("CXXFLAGS", ""))
    if target.name == TARGETS["tf"].name:
        cflags, lflags, _ = _tf_flags()
        # TensorFlow's headers as system headers: their warnings are not ours.
        cflags = ["-isystem" + f[2:] if f.startswith("-I") else f for f in cflags]
        base = [cxx] + cflags + opt + WARN_FLAGS + ["-fPIC", "-I", str(SRC)] + extra
        if not sanitize:
            return [base + ["-shared"] + sources + ["-o", str(out)] + lflags]
        objects, cmds = [], []
        for src in target.sources:
            obj = str(scratch / (Path(src).stem + ".o"))
            glue = TF_GLUE_SANITIZE_EXCLUDE if src == "tf_op.cc" else []
            cmds.append(base + glue + ["-c", str(SRC / src), "-o", obj])
            objects.append(obj)
        return cmds + [[cxx] + opt + ["-shared"] + objects + ["-o", str(out)] + lflags]
    if target.name == TARGETS["tflite"].name:
        cflags, _, lib_dir = _tf_flags()
        abi = [f for f in cflags if f.startswith("-D_GLIBCXX_USE_CXX11_ABI")]
        # $ORIGIN/../../tensorflow: installed next to site-packages/tensorflow;
        # lib_dir: in-tree / editable builds.
        rpath = ["-Wl,-rpath," + lib_dir, "-Wl,-rpath,$ORIGIN/../../tensorflow",
                 "-Wl,-rpath-link," + lib_dir]
        return [[cxx, "-std=c++17"] + abi + opt + WARN_FLAGS
                + ["-fPIC", "-shared", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
                   "-I", str(SRC)] + extra + sources
                + ["-o", str(out), "-L", lib_dir, "-l:libtensorflow_cc.so.2"] + rpath]
    # Standalone driver: no TensorFlow at all.
    return [[cxx, "-std=c++17", "-D_GLIBCXX_USE_CXX11_ABI=1"] + opt + WARN_FLAGS
            + ["-I", str(SRC)] + extra + sources + ["-o", str(out)]]


def _run_commands(cmds: list[list[str]], verbose: bool) -> tuple[bool, str, str]:
    """Run ``cmds`` in order: (success, log of commands and output, compiler output)."""
    log, output = [], []
    for cmd in cmds:
        if verbose:
            print("[build_ops] " + shlex.join(cmd), flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log.append(f"$ {shlex.join(cmd)}\n{proc.stdout}")
        output.append(proc.stdout)
        if proc.returncode != 0:
            return False, f"(exit {proc.returncode}):\n" + "\n".join(log), "".join(output)
    return True, "\n".join(log), "".join(output)


def build(out_dir: str | os.PathLike | None = None, sanitize: bool = False,
          targets: Iterable[str] = DEFAULT_TARGETS, force: bool = False,
          verbose: bool = False) -> dict[str, Path]:
    """Build ``targets`` into ``out_dir`` (default ``ondevice_nlp/_lib``).

    Returns {target: output path}. Up-to-date outputs are left alone unless
    ``force``. Independent targets compile in parallel.

    Raises:
      BuildError: no compiler / TensorFlow, or a compiler error (message
        includes the command lines and the compiler output).
      ValueError: unknown target name.
    """
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    names = list(dict.fromkeys(targets))
    for n in names:
        if n not in TARGETS:
            raise ValueError(f"unknown target {n!r}; choose from {sorted(TARGETS)}")
    if not names:
        return {}
    cxx = _cxx()
    out_dir.mkdir(parents=True, exist_ok=True)
    # Serialize concurrent builds of the same directory (e.g. test workers
    # loading the op at once); each re-checks freshness under the lock.
    with _BuildLock(_stamp_path(out_dir, TARGETS[names[0]]).parent / ".build_ops.lock"):
        return _build_locked(out_dir, names, sanitize, force, verbose, cxx)


class _BuildLock:
    """Exclusive advisory file lock (no-op where fcntl is unavailable)."""

    def __init__(self, path: Path):
        self.path = path
        self.file = None

    def __enter__(self):
        try:
            import fcntl  # pylint: disable=import-outside-toplevel
        except ImportError:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a+b")  # pylint: disable=consider-using-with
        except OSError:
            return self  # read-only location: build without the lock
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()  # releases the lock


def _build_locked(out_dir: Path, names: list[str], sanitize: bool, force: bool, verbose: bool,
                  cxx: str) -> dict[str, Path]:
    results: dict[str, Path] = {}
    jobs = []
    for n in names:
        target = TARGETS[n]
        out = out_dir / target.name
        results[n] = out
        key = _build_key(target, sanitize, cxx)
        if not force and _is_up_to_date(out, target, key):
            if verbose:
                print(f"[build_ops] {out} is up to date")
            continue
        jobs.append((target, out, key))
    if not jobs:
        return results
    if any(t.uses_tf for t, _, _ in jobs):
        _tf_flags()  # query tf.sysconfig once, before the worker threads

    def run(job):
        target, out, key = job
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=out_dir) as scratch:
            tmp = Path(scratch) / target.name
            ok, log, output = _run_commands(
                _commands(target, tmp, Path(scratch), sanitize, cxx), verbose)
            if ok:
                os.chmod(tmp, 0o755)
                os.replace(tmp, out)  # atomic: loaders never see a partial file
        return target, out, key, ok, log, output

    errors = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for target, out, key, ok, log, output in pool.map(run, jobs):
            if not ok:
                errors.append(f"building {target.name} failed {log}")
                continue
            if verbose and output.strip():
                print(output)
            try:
                stamp = _stamp_path(out_dir, target)
                stamp.parent.mkdir(parents=True, exist_ok=True)
                stamp.write_text(json.dumps(key))
            except OSError:
                pass  # read-only tree: we will simply rebuild next time
            if verbose:
                print(f"[build_ops] built {out}")
    if errors:
        raise BuildError("\n\n".join(errors))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None,
                        help=f"output directory (default {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--sanitize", action="store_true",
                        help="ASan + UBSan (-fno-sanitize-recover=all), -O1 -g")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS),
                        help="target to build (repeatable; default: tf and tflite)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    args = parser.parse_args(argv)
    try:
        outputs = build(args.out, sanitize=args.sanitize, targets=args.target or DEFAULT_TARGETS,
                        force=args.force, verbose=not args.quiet)
    except (BuildError, ValueError) as e:
        print(f"build_ops: error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        for path in outputs.values():
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
