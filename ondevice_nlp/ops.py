"""Python API of the ``OndeviceProjection`` op (TensorFlow and TFLite).

The op maps a batch of UTF-8 strings to per-token hashing-projection features,
the input layer of the two on-device models of this package:

* ``minhash``: MinHash counting Bloom filter over character trigrams, the
  projection of pNLP-Mixer (Fusco et al. 2022, "pNLP-Mixer: an Efficient
  all-MLP Architecture for Language", arXiv:2202.04350, Sec. 2.1);
* ``ternary``: 2-bit ternary features, the projection of pQRNN (Kaliamoorthi
  et al. 2021, "Distilling Large Language Models into Tiny and Effective
  Students using pQRNN", arXiv:2101.08890).

The specification is :mod:`ondevice_nlp.projection_ref` (pure NumPy); one C++
core (``custom_ops/projection.cc``) implements it for both runtimes, and the
tests hold the three bit-for-bit equal.

Shapes and dtypes, for a batch of B strings and a config vector
``ProjectionConfig.to_vector()`` (int32 [7] = [1, method, F, N, w, S, seed],
int32 [8] = [2, method, F, N, w, S, seed, shape] with token shape features, or
int32 [9] = [3, method, F, N, w, S, seed, shape, ngram] with letter n-grams):

* ``features``: float32 [B, S, (2w+1)*F]
* ``mask``: float32 [B, S] (1.0 for real tokens, 0.0 for padding)
* ``offsets``: int32 [B, S, 2] (UTF-8 byte start/end of each token)

The shared libraries live in ``ondevice_nlp/_lib`` and are built by
``tools/build_ops.py`` (also run by ``pip install``). In a source checkout they
are (re)built on first use when missing or older than their sources. Setting
the environment variable ``ONDEVICE_NLP_LIB_DIR`` (read at import) loads them
from that folder instead, as they are (no build): the sanitizer tests use it to
run ASan/UBSan builds through this same API.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

CUSTOM_OP_NAME = "OndeviceProjection"
"""Name of the op in TensorFlow graphs and of the TFLite custom op."""

LIB_DIR_ENV = "ONDEVICE_NLP_LIB_DIR"
"""Environment variable naming a folder of prebuilt op libraries to load instead of ``_lib``."""

_PACKAGE_LIB_DIR = Path(__file__).resolve().parent / "_lib"
LIB_DIR = Path(os.environ[LIB_DIR_ENV]).resolve() if os.environ.get(LIB_DIR_ENV) else _PACKAGE_LIB_DIR
TF_OP_LIBRARY = LIB_DIR / "_projection_tf_op.so"
TFLITE_LIBRARY = LIB_DIR / "_projection_tflite.so"

_REPO = Path(__file__).resolve().parents[1]
_BUILD_SCRIPT = _REPO / "tools" / "build_ops.py"
_SOURCES = _REPO / "custom_ops"
_TFLITE_IDENTIFIER = b"TFL3"

_lock = threading.RLock()
_tf_module = None
_tflite_cdll = None


def _have_sources() -> bool:
    return _BUILD_SCRIPT.is_file() and (_SOURCES / "projection.cc").is_file()


def _build_module():
    spec = importlib.util.spec_from_file_location("_ondevice_nlp_build_ops", _BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def _ensure_library(path: Path, target: str) -> Path:
    """Return ``path``, building it from ``custom_ops/`` first in a source checkout
    (not for a folder given with ``ONDEVICE_NLP_LIB_DIR``, used as it is)."""
    if _have_sources() and LIB_DIR == _PACKAGE_LIB_DIR:
        build_ops = _build_module()
        try:
            build_ops.build(out_dir=LIB_DIR, targets=(target,), verbose=False)
        except (build_ops.BuildError, OSError) as e:
            if not path.is_file():
                raise RuntimeError(
                    f"{path.name} is missing and building it from {_SOURCES} failed:\n{e}") from None
            warnings.warn(f"could not rebuild {path.name} from {_SOURCES}; using the existing "
                          f"library, which may be stale:\n{e}", RuntimeWarning, stacklevel=3)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing and no sources are available to build it; reinstall "
            "ondevice-nlp (pip install builds it) or run `python tools/build_ops.py` in a checkout"
            + (f" (libraries are loaded from ${LIB_DIR_ENV}={LIB_DIR})" if LIB_DIR != _PACKAGE_LIB_DIR
               else ""))
    return path


def load_tf_op_library():
    """Load (once per process) the TensorFlow op library.

    Returns:
      The module returned by ``tf.load_op_library``; ``.ondevice_projection``
      is the raw op.

    Raises:
      FileNotFoundError: the library is missing and there are no sources.
      RuntimeError: the library is missing and building it failed (the
        compiler's message is included).
    """
    global _tf_module
    with _lock:
        if _tf_module is None:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            path = _ensure_library(TF_OP_LIBRARY, "tf")
            _tf_module = tf.load_op_library(str(path))
        return _tf_module


def _config_vector(config: Any) -> Any:
    if hasattr(config, "to_vector"):  # ProjectionConfig
        return config.to_vector()
    return config


def projection(texts, config_vector, name: str | None = None):
    """Run the projection op in TensorFlow (eager or inside ``tf.function``).

    Args:
      texts: tf.string [B] (anything ``tf.convert_to_tensor`` accepts).
      config_vector: int32 [7] (version 1), [8] (version 2) or [9] (version 3)
        ``ProjectionConfig.to_vector()`` (a ``ProjectionConfig`` is accepted too). A constant config gives static
        S and D in graphs (needed for TFLite conversion).
      name: optional op name.

    Returns:
      (features float32 [B, S, (2w+1)F], mask float32 [B, S],
      offsets int32 [B, S, 2]).

    Raises:
      tf.errors.InvalidArgumentError (eager) / ValueError (graph construction
      with a constant config): invalid config or input of the wrong rank.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    # Inside tf.function, keep AutoGraph out of the loading/building code.
    return tf.autograph.experimental.do_not_convert(_projection)(texts, config_vector, name)


def _projection(texts, config_vector, name):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    lib = load_tf_op_library()
    config = _config_vector(config_vector)
    if isinstance(config, (list, tuple, np.ndarray)):
        config = np.asarray(config, dtype=np.int32)
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    config = tf.convert_to_tensor(config, dtype=tf.int32)
    features, mask, offsets = lib.ondevice_projection(input=texts, config=config, name=name)
    return features, mask, offsets


def load_tflite_library() -> ctypes.CDLL:
    """Load (once per process) the TFLite kernel library through ctypes.

    Exposes ``OndeviceNlp_ProjectionRegistration()`` (a
    ``const TfLiteRegistration*``) and ``OndeviceNlp_RegisterProjection(void*
    resolver)``.
    """
    global _tflite_cdll
    with _lock:
        if _tflite_cdll is None:
            path = _ensure_library(TFLITE_LIBRARY, "tflite")
            lib = ctypes.CDLL(str(path))
            lib.OndeviceNlp_RegisterProjection.argtypes = [ctypes.c_void_p]
            lib.OndeviceNlp_RegisterProjection.restype = None
            lib.OndeviceNlp_ProjectionRegistration.argtypes = []
            lib.OndeviceNlp_ProjectionRegistration.restype = ctypes.c_void_p
            _tflite_cdll = lib
        return _tflite_cdll


def tflite_registerer(resolver_address: int) -> None:
    """Register ``OndeviceProjection`` in a TFLite ``MutableOpResolver``.

    Pass it as ``InterpreterWithCustomOps(custom_op_registerers=[tflite_registerer], ...)``
    (ai_edge_litert or tf.lite); the interpreter calls it with the resolver's
    address as an int.
    """
    address = int(resolver_address)
    if address == 0:
        raise ValueError("null op resolver address")
    load_tflite_library().OndeviceNlp_RegisterProjection(ctypes.c_void_p(address))


def check_flatbuffer(header: bytes, size: int, what: str) -> None:
    """Cheap sanity check of a TFLite file's first 8 bytes (identifier, root offset).

    Raises:
      ValueError: naming ``what``, when the bytes cannot be a TFLite flatbuffer.
    """
    if size < 8 or len(header) < 8:
        raise ValueError(f"{what} is not a TFLite model: {size} bytes is too short")
    if header[4:8] != _TFLITE_IDENTIFIER:
        raise ValueError(f"{what} is not a TFLite model: flatbuffer identifier is "
                         f"{header[4:8]!r}, expected {_TFLITE_IDENTIFIER!r}")
    root = int.from_bytes(header[0:4], "little")
    if not 8 <= root < size:
        raise ValueError(f"{what} is not a valid TFLite model: root table offset {root} is "
                         f"outside the {size}-byte buffer")


class MissingCustomOpError(RuntimeError):
    """A TFLite interpreter without a kernel for a custom op of the model.

    Attributes:
      op_names: the unresolved custom op names, in the order reported.
    """

    def __init__(self, message: str, op_names: list[str]):
        super().__init__(message)
        self.op_names = op_names


_UNRESOLVED_OP = re.compile(r"unresolved custom op:\s*([A-Za-z0-9_.\-/]+?)\.?(?=\s|$)")


def explain_interpreter_error(error: BaseException) -> BaseException:
    """Turn a TFLite "unresolved custom op" error into one that says how to fix it.

    The TFLite runtime reports a custom op without a registered kernel (e.g. a
    model of ours loaded in a plain ``ai_edge_litert.interpreter.Interpreter``)
    only when tensors are allocated, as ``RuntimeError('Encountered unresolved
    custom op: OndeviceProjection.\nSee instructions: ...')``.

    Args:
      error: an exception raised by a TFLite interpreter (constructor,
        ``allocate_tensors``, ``get_signature_runner`` or ``invoke``).

    Returns:
      a :class:`MissingCustomOpError` (one-line message naming the op and,
      for ``OndeviceProjection``, how to load the model with it:
      ``ondevice_nlp.ops.make_interpreter`` or ``InterpreterWithCustomOps(
      custom_op_registerers=[ondevice_nlp.ops.tflite_registerer])``) when the
      error is about unresolved custom ops; ``error`` itself otherwise.
    """
    names = list(dict.fromkeys(_UNRESOLVED_OP.findall(str(error))))
    if not names:
        return error
    ours = [n for n in names if n == CUSTOM_OP_NAME]
    others = [n for n in names if n != CUSTOM_OP_NAME]
    parts = []
    if ours:
        parts.append(
            f"the TFLite model uses the custom op {CUSTOM_OP_NAME}, which is not registered in "
            "this interpreter: load it with ondevice_nlp.ops.make_interpreter(model_path) (or "
            "ondevice_nlp.TFLiteModel), or pass custom_op_registerers="
            "[ondevice_nlp.ops.tflite_registerer] to ai_edge_litert.interpreter."
            "InterpreterWithCustomOps(custom_op_registerers=[...], model_path=...); on Android/C++ "
            "register OndeviceNlp_ProjectionRegistration() from _projection_tflite.so "
            f"under the name {CUSTOM_OP_NAME}")
    if others:
        parts.append(
            f"the TFLite model uses custom op(s) {', '.join(others)} that ondevice-nlp does not "
            f"provide (its only custom op is {CUSTOM_OP_NAME}): the file was not exported by "
            "ondevice-nlp, or it is corrupt")
    return MissingCustomOpError("; ".join(parts), names)


OP_RESOLVERS = ("default", "no-delegates", "reference")
"""Kernel sets of ``make_interpreter(op_resolver=...)`` (ai-edge-litert ``OpResolverType``):

* ``"default"`` (``AUTO``): TFLite's optimized builtin kernels, with the XNNPACK
  delegate applied to the ops it supports; what an app gets by default.
* ``"no-delegates"`` (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``): the optimized
  builtin kernels only (ruy/optimized_ops, no XNNPACK).
* ``"reference"`` (``BUILTIN_REF``): TFLite's reference kernels, portable C++
  without SIMD: slower, but their int8 outputs are bit-identical on x86 and
  aarch64 (``tools/aarch64.py check``), whereas the optimized builtin int8
  kernels requantize with other rounding on the two architectures (one int8
  step apart on some values; see README.md, "aarch64").
"""


def check_op_resolver(op_resolver: str) -> str:
    """``op_resolver`` itself when it is one of :data:`OP_RESOLVERS`.

    Raises:
      ValueError: naming the valid values.
    """
    if op_resolver not in OP_RESOLVERS:
        raise ValueError(f"op_resolver must be one of {', '.join(OP_RESOLVERS)}, got {op_resolver!r}")
    return op_resolver


def _op_resolver_type(op_resolver: str):
    from ai_edge_litert.interpreter import OpResolverType  # pylint: disable=import-outside-toplevel
    return {"default": OpResolverType.AUTO,
            "no-delegates": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "reference": OpResolverType.BUILTIN_REF}[check_op_resolver(op_resolver)]


def make_interpreter(model_path: str | os.PathLike | None = None,
                     model_content: bytes | None = None, num_threads: int = 1,
                     op_resolver: str = "default", preserve_all_tensors: bool = False):
    """An ``ai_edge_litert`` ``InterpreterWithCustomOps`` with our op registered.

    Exactly one of ``model_path`` / ``model_content`` must be given;
    ``op_resolver`` picks the builtin kernels (one of :data:`OP_RESOLVERS`;
    our op is registered in every one); ``preserve_all_tensors`` keeps every
    intermediate tensor readable after ``invoke()`` (for debugging; more memory,
    as ai-edge-litert's ``experimental_preserve_all_tensors``). The model
    is checked first (size, ``TFL3`` flatbuffer identifier, root offset) so a
    wrong file gives a clear exception; the interpreter then runs the
    flatbuffer verifier (a truncated or corrupted model is a ValueError, not a
    crash), and the kernel itself rejects malformed inputs with an error. Call
    ``allocate_tensors()`` (after ``resize_tensor_input`` for a batch > 1)
    before ``invoke()``.

    Raises:
      FileNotFoundError: ``model_path`` does not exist.
      ValueError: both or neither source given, not a TFLite flatbuffer, the
        interpreter rejected the model, ``num_threads`` < 1, or an unknown
        ``op_resolver``.
    """
    if (model_path is None) == (model_content is None):
        raise ValueError("give exactly one of model_path or model_content")
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be an int >= 1, got {num_threads!r}")
    from ai_edge_litert.interpreter import InterpreterWithCustomOps  # pylint: disable=import-outside-toplevel

    kwargs: dict[str, Any] = {"num_threads": num_threads,
                              "experimental_op_resolver_type": _op_resolver_type(op_resolver),
                              "experimental_preserve_all_tensors": preserve_all_tensors}
    if model_path is not None:
        path = Path(os.fspath(model_path))
        if not path.exists():
            raise FileNotFoundError(f"TFLite model not found: {path}")
        if not path.is_file():
            raise ValueError(f"TFLite model path is not a file: {path}")
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(8)
        what = f"TFLite model file {path}"
        check_flatbuffer(header, size, what)
        kwargs["model_path"] = str(path)
    else:
        try:
            content = bytes(model_content)
        except TypeError:
            raise ValueError("model_content must be bytes-like, got "
                             f"{type(model_content).__name__}") from None
        what = "model_content"
        check_flatbuffer(content[:8], len(content), what)
        kwargs["model_content"] = content
    load_tflite_library()  # fail here, with a clear message, if it is missing
    try:
        return InterpreterWithCustomOps(custom_op_registerers=[tflite_registerer], **kwargs)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"could not create a TFLite interpreter from {what}: "
                         f"{explain_interpreter_error(e)}") from e


__all__ = [
    "CUSTOM_OP_NAME",
    "check_flatbuffer",
    "check_op_resolver",
    "explain_interpreter_error",
    "LIB_DIR",
    "LIB_DIR_ENV",
    "TF_OP_LIBRARY",
    "TFLITE_LIBRARY",
    "load_tf_op_library",
    "load_tflite_library",
    "make_interpreter",
    "MissingCustomOpError",
    "OP_RESOLVERS",
    "projection",
    "tflite_registerer",
]
