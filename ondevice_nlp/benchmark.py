"""On-device benchmark of ``.tflite`` models: size, parameters, MACs, latency, memory.

``ondevice-nlp benchmark MODEL.tflite [MODEL2.tflite ...]`` (see :func:`benchmark`)
answers the question users ask before shipping a model to a phone or a watch:
how many bytes, how much arithmetic, how many milliseconds per utterance and
how much memory. Every model is run with ai-edge-litert and our
``OndeviceProjection`` kernel (:func:`ondevice_nlp.ops.make_interpreter`), one
utterance at a time (batch 1, as an app does).

What is reported per model (keys of the JSON written by ``--json``):

* ``bytes``: the file size in bytes.
* ``parameters``: the ``"parameters"`` entry of our TFLite metadata when the
  file has one (the Keras count at export), otherwise ``constant_elements``.
  ``constant_elements`` is always given: the number of elements of the
  constant tensors of the flatbuffer (each buffer counted once), leaving out
  int32/int64 constants that are not biases (shapes, axes, permutations, the
  projection config vector), i.e. weights, biases, embedding tables,
  LayerNorm scales.
* ``macs``: multiply-accumulates per utterance, counted from the graph with
  the tensor shapes the interpreter computes for one utterance (batch 1):
  FULLY_CONNECTED ``numel(out) * K`` (K = weights' last dim), CONV_2D
  ``numel(out) * KH * KW * Cin/groups``, DEPTHWISE_CONV_2D ``numel(out) * KH *
  KW``, CONV_3D ``numel(out) * KD * KH * KW * Cin``, TRANSPOSE_CONV
  ``numel(in) * KH * KW * Cout``, BATCH_MATMUL ``numel(out) * K``,
  UNIDIRECTIONAL/BIDIRECTIONAL_SEQUENCE_LSTM and UNIDIRECTIONAL_SEQUENCE_RNN
  ``steps * numel(all gate/recurrent/projection weights)``. Element-wise
  ops, normalisation, softmax, GELU, lookups (GATHER) and our projection op
  (hashing, no multiplications) are not MACs and are not counted; ops whose
  cost cannot be read from shapes (WHILE, IF, CALL_ONCE and ops of other
  subgraphs) are listed under ``uncounted_ops``.
* ``latency_ms[threads]``: ``p50/p90/p99/mean/min`` milliseconds per
  utterance for each thread count, after warm-up. One timed run is
  ``set_tensor`` of the inputs + ``invoke()`` through the Python binding
  (outputs are read outside the timed region).
* ``projection``: the projection op's share of the latency. ai-edge-litert
  2.3.0's Python ``Interpreter`` exposes no per-op profiler (only
  ``experimental_force_delegate_node_profiling``, whose results are not
  readable from Python), so the share is measured by timing a model that
  holds only the file's own ``OndeviceProjection`` node(s), sliced out of the
  same flatbuffer (same config constant, same inputs), interleaved
  round-robin with the full model: ``share = p50(projection-only) /
  p50(full)`` (``method: "sliced-subgraph"``); ``share_of_min`` is the same
  ratio of the minima (less sensitive to a loaded machine).
* ``memory``: resident set sizes in bytes, measured in a fresh subprocess per
  model from ``/proc/self/status``: ``rss_before_load`` (Python, numpy,
  ai-edge-litert and the op library loaded, no model), ``rss_after_load``
  (interpreter created from the file path, i.e. memory-mapped as in an app,
  tensors allocated; XNNPACK packs its weights here), ``peak_rss`` (``VmHWM`` after the
  runs; the high-water mark is reset through ``/proc/self/clear_refs`` just
  before loading, so it is the peak from loading on). ``load_bytes`` and
  ``peak_increase_bytes`` are the differences to ``rss_before_load``, the part
  an app pays for the model.

Comparison mode (several models): all models (and their projection-only
slices) run in one process, interleaved round-robin (round r runs utterance
r on every model in turn), so that a noisy machine slows all models alike;
``ratios`` gives each model's figures divided by the first model's.

Inputs fed to the models: a string input gets the raw UTF-8 utterance;
integer inputs (token-id models such as the BERT baselines of
``tools/make_baseline_tflite.py``) get ids hashed from the utterance's
whitespace words (``1 + crc32(word) % 1000``, 0 = padding, inputs named
``*mask*`` get 1 on real tokens, ``*type*``/``*segment*`` zeros); other
inputs get zeros.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .tflite_model import ModelFileError, check_tflite_bytes

PROJECTION_OP = "OndeviceProjection"

#: Built-in utterances: short and long, several scripts (Latin with accents,
#: Devanagari, Thai without spaces, CJK, Cyrillic, Arabic), emoji, digits.
DEFAULT_TEXTS = (
    "wake me up at 7 am",
    "Set an alarm for 7 am tomorrow",
    "what's the weather like in São Paulo this weekend?",
    "remind me to call mom when I get home from work tonight",
    "play some jazz 🎷🎶",
    "Send a message to Angelika saying I'll be 10 minutes late 😅",
    "cancel all my reminders for next Tuesday and Wednesday after 5 pm",
    "Erinnere mich morgen um 8 Uhr an den Zahnarzttermin",
    "¿Qué tiempo hará mañana en Barcelona?",
    "mets un minuteur de cinq minutes pour les pâtes",
    "कल सुबह 6 बजे का अलार्म लगाओ",
    "मुझे आज के मौसम के बारे में बताओ",
    "ตั้งปลุกตอนหกโมงเช้าพรุ่งนี้",
    "พรุ่งนี้ที่กรุงเทพฯ ฝนจะตกไหม",
    "明天早上七点叫我起床",
    "Какая погода будет завтра в Москве?",
    "ما هو الطقس في دبي اليوم",
    "ok",
    ("I need you to create a reminder for the team meeting on Friday at 3:30 pm in the big "
     "conference room, and also send a message to Bob and Chen Li that the agenda changed"),
    "how long is my commute if I leave at 8:15 and take the A10 instead of the ring road?",
)

_BIAS_INPUT = {"FULLY_CONNECTED": 2, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "CONV_3D": 2,
               "TRANSPOSE_CONV": 3}
_LSTM_WEIGHTS = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (1, 2, 3, 4, 5, 6, 7, 8, 16),
    "LSTM": (1, 2, 3, 4, 5, 6, 7, 8, 16),
    "BIDIRECTIONAL_SEQUENCE_LSTM": (1, 2, 3, 4, 5, 6, 7, 8, 16,
                                    18, 19, 20, 21, 22, 23, 24, 25, 33),
    "UNIDIRECTIONAL_SEQUENCE_RNN": (1, 2),
    "RNN": (1, 2),
    "BIDIRECTIONAL_SEQUENCE_RNN": (1, 2, 5, 6),
}
_UNCOUNTABLE = {"WHILE", "IF", "CALL_ONCE", "CALL"}


class BenchmarkError(ValueError):
    """Bad benchmark input (texts file, options) the user can fix."""


# ---------------------------------------------------------------------------
# Graph analysis (flatbuffer + one interpreter run for the shapes)
# ---------------------------------------------------------------------------

def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _op_names() -> dict[int, str]:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items()
            if not k.startswith("_") and isinstance(v, int)}


def parse_model(buf: bytes, path: str):
    """Unpack a ``.tflite`` flatbuffer into the schema's object API (``ModelT``).

    Raises:
      ModelFileError: not a TFLite flatbuffer, or truncated/corrupt (names ``path``).
    """
    check_tflite_bytes(buf, path)
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
        if not model.subgraphs:
            raise ValueError("no subgraphs")
        return model
    except Exception as e:  # flatbuffers raises assorted errors on corrupt input
        raise ModelFileError(f"{path}: cannot parse the TFLite flatbuffer ({e!r}); "
                             "the file is truncated or corrupt") from e


def _op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    name = _op_names().get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        custom = code.customCode
        return "CUSTOM:" + (custom.decode() if isinstance(custom, bytes) else str(custom))
    return name


def _is_constant(model, tensor) -> bool:
    buf = model.buffers[tensor.buffer] if 0 <= tensor.buffer < len(model.buffers) else None
    if buf is None:
        return False
    has_data = buf.data is not None and len(buf.data) > 0
    return has_data or int(getattr(buf, "size", 0) or 0) > 0


def count_parameters(model) -> int:
    """Elements of the constant tensors of all subgraphs (see module doc).

    Each buffer is counted once (shared weights); int32/int64 constants count
    only as a bias input of FULLY_CONNECTED/CONV/DEPTHWISE/TRANSPOSE_CONV.
    """
    schema = _schema()
    int_types = {schema.TensorType.INT32, schema.TensorType.INT64}
    bias_tensors: set[tuple[int, int]] = set()
    for gi, sg in enumerate(model.subgraphs):
        for op in sg.operators or []:
            k = _BIAS_INPUT.get(_op_name(model, op))
            if k is not None and op.inputs is not None and len(op.inputs) > k and op.inputs[k] >= 0:
                bias_tensors.add((gi, int(op.inputs[k])))
    seen: set[int] = set()
    total = 0
    for gi, sg in enumerate(model.subgraphs):
        for ti, t in enumerate(sg.tensors or []):
            if not _is_constant(model, t) or t.buffer in seen:
                continue
            if t.type in int_types and (gi, ti) not in bias_tensors:
                continue
            seen.add(t.buffer)
            shape = [] if t.shape is None else [int(d) for d in t.shape]
            total += int(np.prod(shape, dtype=np.int64)) if shape else 1
    return total


def count_macs(model, shapes: dict[int, Sequence[int]]) -> tuple[int, dict[str, int], list[str]]:
    """Multiply-accumulates of subgraph 0 (see module doc for what counts).

    Args:
      model: ``ModelT``.
      shapes: tensor index -> runtime shape (batch 1); tensors missing here fall
        back to the flatbuffer's static shape.

    Returns:
      (total MACs, MACs per op type, names of ops whose cost is not counted).
    """
    sg = model.subgraphs[0]

    def shape(i: int) -> list[int]:
        if i in shapes:
            return [int(d) for d in shapes[i]]
        t = sg.tensors[i]
        return [] if t.shape is None else [int(d) for d in t.shape]

    def numel(i: int) -> int:
        return int(np.prod(shape(i), dtype=np.int64))

    by_op: dict[str, int] = {}
    uncounted: list[str] = []
    for op in sg.operators or []:
        name = _op_name(model, op)
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        macs = None
        if name == "FULLY_CONNECTED":
            macs = numel(outs[0]) * shape(ins[1])[-1]
        elif name == "CONV_2D":
            _, kh, kw, cin = shape(ins[1])
            macs = numel(outs[0]) * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D":
            _, kh, kw, _ = shape(ins[1])
            macs = numel(outs[0]) * kh * kw
        elif name == "CONV_3D":
            kd, kh, kw, cin, _ = shape(ins[1])
            macs = numel(outs[0]) * kd * kh * kw * cin
        elif name == "TRANSPOSE_CONV":
            cout, kh, kw, _ = shape(ins[1])
            macs = numel(ins[2]) * kh * kw * cout
        elif name == "BATCH_MATMUL":
            opts = op.builtinOptions
            xs = shape(ins[0])
            k = xs[-2] if getattr(opts, "adjX", False) else xs[-1]
            macs = numel(outs[0]) * k
        elif name in _LSTM_WEIGHTS:
            x = shape(ins[0])
            steps = numel(ins[0]) // max(1, x[-1])
            macs = steps * sum(numel(ins[k]) for k in _LSTM_WEIGHTS[name]
                               if k < len(ins) and ins[k] >= 0)
        elif name in _UNCOUNTABLE or name.startswith("STABLEHLO_"):
            uncounted.append(name)
        if macs is not None:
            by_op[name] = by_op.get(name, 0) + int(macs)
    return sum(by_op.values()), by_op, uncounted


def _op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in model.subgraphs[0].operators or []:
        n = _op_name(model, op)
        counts[n] = counts.get(n, 0) + 1
    return counts


def projection_submodel(model) -> bytes | None:
    """A flatbuffer holding only subgraph 0's ``OndeviceProjection`` node(s).

    Same operator codes and the same constant inputs (config vector) as the
    full model; inputs are the nodes' non-constant inputs, outputs all their
    outputs. Unused tensors and buffers, signatures and metadata are dropped.
    Returns None when the model has no such node.
    """
    import copy

    import flatbuffers

    schema = _schema()
    sg = model.subgraphs[0]
    keep_ops = [op for op in sg.operators or [] if _op_name(model, op) == "CUSTOM:" + PROJECTION_OP]
    if not keep_ops:
        return None
    used = sorted({int(i) for op in keep_ops for i in list(op.inputs) + list(op.outputs) if i >= 0})
    remap = {old: new for new, old in enumerate(used)}
    new = schema.ModelT()
    new.version = model.version
    new.operatorCodes = model.operatorCodes
    new.description = b"projection-only slice (ondevice_nlp.benchmark)"
    new.buffers = [schema.BufferT()]
    tensors, produced = [], set()
    for old in used:
        t = copy.copy(sg.tensors[old])
        if _is_constant(model, t):
            b = model.buffers[t.buffer]
            nb = schema.BufferT()
            if b.data is not None and len(b.data):
                nb.data = b.data
            else:  # large-model layout: data after the flatbuffer
                raise ModelFileError("projection config stored outside the flatbuffer; "
                                     "not supported")
            new.buffers.append(nb)
            t.buffer = len(new.buffers) - 1
        else:
            t.buffer = 0
        tensors.append(t)
    ops = []
    for op in keep_ops:
        o = copy.copy(op)
        o.inputs = [remap[int(i)] if i >= 0 else -1 for i in op.inputs]
        o.outputs = [remap[int(i)] for i in op.outputs]
        produced.update(o.outputs)
        ops.append(o)
    nsg = schema.SubGraphT()
    nsg.tensors = tensors
    nsg.operators = ops
    nsg.inputs = sorted({i for o in ops for i in o.inputs
                         if i >= 0 and i not in produced and tensors[i].buffer == 0})
    nsg.outputs = sorted(produced)
    nsg.name = b"projection"
    new.subgraphs = [nsg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(new.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _read_our_metadata(buf: bytes, path: str) -> dict | None:
    from .tflite_model import read_metadata
    try:
        return read_metadata(buf, path)
    except ModelFileError:
        return None


# ---------------------------------------------------------------------------
# Running models
# ---------------------------------------------------------------------------

def token_ids(text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashed word ids int32 [length] (0 = padding) and mask int32 [length]."""
    words = text.lower().split()[:length]
    ids = np.zeros(length, np.int32)
    ids[:len(words)] = [1 + zlib.crc32(w.encode("utf-8")) % 1000 for w in words]
    mask = (ids > 0).astype(np.int32)
    return ids, mask


def _interpreter(content: bytes | str, num_threads: int, what: str, op_resolver: str = "default"):
    """``make_interpreter`` from bytes, or from a path (mmap, as in an app)."""
    from . import ops

    source = {"model_path" if isinstance(content, str) else "model_content": content}
    try:
        return ops.make_interpreter(num_threads=num_threads, op_resolver=op_resolver, **source)
    except ValueError as e:
        raise ModelFileError(f"{what}: {e}") from e


class Runner:
    """One interpreter fed one utterance at a time (batch 1).

    Raises (constructor):
      ModelFileError: the runtime refuses the model or an input shape.
    """

    def __init__(self, content: bytes | str, num_threads: int, what: str,
                 op_resolver: str = "default"):
        """``content``: the flatbuffer, or a file path (memory-mapped by the runtime);
        ``op_resolver``: one of ``ops.OP_RESOLVERS``."""
        self.what = what
        self.interp = _interpreter(content, num_threads, what, op_resolver)
        self.inputs = self.interp.get_input_details()
        try:
            for d in self.inputs:
                sig = list(d.get("shape_signature", d["shape"]))
                want = [1 if (i == 0 and s == -1) else s for i, s in enumerate(sig)]
                want = [64 if s == -1 else int(s) for s in want]  # unknown length: 64 tokens
                if list(d["shape"]) != want:
                    self.interp.resize_tensor_input(d["index"], want)
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelFileError(f"{what}: cannot allocate tensors for batch 1: {e}") from e
        self.inputs = self.interp.get_input_details()
        self.outputs = self.interp.get_output_details()

    def feeds(self, text: str) -> list[tuple[int, np.ndarray]]:
        """(tensor index, value) pairs for one utterance."""
        out = []
        for d in self.inputs:
            shape, dtype, name = list(d["shape"]), d["dtype"], d["name"].lower()
            if dtype in (np.bytes_, np.object_, np.str_):
                out.append((d["index"], np.array([text.encode("utf-8")] * int(np.prod(shape)),
                                                 dtype=object).reshape(shape)))
            elif np.issubdtype(dtype, np.integer) and len(shape) >= 1:
                ids, mask = token_ids(text, shape[-1])
                v = mask if "mask" in name else (
                    np.zeros_like(ids) if ("type" in name or "segment" in name) else ids)
                out.append((d["index"], np.broadcast_to(v, shape).astype(dtype)))
            else:
                out.append((d["index"], np.zeros(shape, dtype)))
        return out

    def run(self, feeds) -> int:
        """Set the inputs and invoke; returns the elapsed nanoseconds."""
        t0 = time.perf_counter_ns()
        for index, value in feeds:
            self.interp.set_tensor(index, value)
        self.interp.invoke()
        return time.perf_counter_ns() - t0

    def output_values(self) -> list[np.ndarray]:
        return [self.interp.get_tensor(d["index"]) for d in self.outputs]


def runtime_shapes(content: bytes, what: str, text: str) -> dict[int, list[int]]:
    """Shapes of subgraph 0's tensors after one batch-1 run without delegates."""
    r = Runner(content, 1, what, op_resolver="no-delegates")
    try:
        r.run(r.feeds(text))
    except (ValueError, RuntimeError) as e:
        raise ModelFileError(f"{what}: invoke failed: {e}") from e
    return {int(d["index"]): [int(x) for x in d["shape"]]
            for d in r.interp.get_tensor_details()}


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99 (linear interpolation), mean and min of a latency sample (ms)."""
    a = np.asarray(ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99),
            "mean": float(a.mean()), "min": float(a.min()), "n": int(a.size)}


def interleaved_latency(runners: Sequence[Runner], texts: Sequence[str], runs: int,
                        warmup: int) -> list[list[float]]:
    """Round-robin timing: round r runs ``texts[r % len]`` on every runner in turn.

    Returns per runner the ``runs`` latencies in ms (warm-up rounds dropped).

    Raises:
      ModelFileError: an invoke failed (names the model).
    """
    feeds = [[r.feeds(t) for t in texts] for r in runners]
    times: list[list[float]] = [[] for _ in runners]
    for rnd in range(warmup + runs):
        k = rnd % len(texts)
        for i, r in enumerate(runners):
            try:
                ns = r.run(feeds[i][k])
            except (ValueError, RuntimeError) as e:
                raise ModelFileError(f"{r.what}: invoke failed: {e}") from e
            if rnd >= warmup:
                times[i].append(ns / 1e6)
    return times


# ---------------------------------------------------------------------------
# Memory (fresh subprocess per model)
# ---------------------------------------------------------------------------

def _status_kib(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        m = re.search(rf"^{field_name}:\s+(\d+) kB", f.read(), re.M)
    if m is None:
        raise RuntimeError(f"/proc/self/status has no {field_name}")
    return int(m.group(1))


def _memory_child(spec: dict) -> dict:
    """Runs in the subprocess: load one model, run it, report RSS (bytes)."""
    from . import ops
    import ai_edge_litert.interpreter  # noqa: F401  (part of the baseline)

    ops.load_tflite_library()
    before = _status_kib("VmRSS")
    hwm_reset = True
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        hwm_reset = False
    r = Runner(spec["path"], spec["threads"], spec["path"],  # mmap, as an app does
               spec.get("op_resolver", "default"))
    after = _status_kib("VmRSS")
    feeds = [r.feeds(t) for t in spec["texts"]]
    for i in range(spec["warmup"] + spec["runs"]):
        r.run(feeds[i % len(feeds)])
    peak = _status_kib("VmHWM")
    kib = 1024
    return {"rss_before_load": before * kib, "rss_after_load": after * kib,
            "peak_rss": peak * kib, "load_bytes": (after - before) * kib,
            "peak_increase_bytes": (peak - before) * kib, "hwm_reset": hwm_reset,
            "threads": spec["threads"], "runs": spec["runs"]}


def measure_memory(path: str, threads: int, texts: Sequence[str], runs: int, warmup: int,
                   timeout_s: float = 600.0, op_resolver: str = "default") -> dict:
    """Resident memory of one model, measured in a fresh Python subprocess.

    Raises:
      ModelFileError: the subprocess failed (its last stderr lines are included).
    """
    spec = {"path": str(path), "threads": threads, "texts": list(texts), "runs": runs,
            "warmup": warmup, "op_resolver": op_resolver}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "ondevice_nlp.benchmark", "--memory-child"],
                              input=json.dumps(spec), capture_output=True, text=True, env=env,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ModelFileError(f"{path}: memory measurement took over {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ModelFileError(f"{path}: memory measurement subprocess failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------

def read_texts_file(path: str) -> list[str]:
    """Utterances of a UTF-8 text file, one per non-empty line.

    Raises:
      FileNotFoundError: no such file.
      BenchmarkError: invalid UTF-8 (names the line) or no utterance.
    """
    texts = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise BenchmarkError(f"{path}:{n}: not valid UTF-8 ({e.reason} at byte "
                                     f"{e.start})") from None
            if line.strip():
                texts.append(line)
    if not texts:
        raise BenchmarkError(f"{path}: no utterances (the file has no non-empty line)")
    return texts


def sample_texts(texts: Sequence[str], n: int) -> list[str]:
    """At most ``n`` utterances spread evenly over ``texts`` (keeps order)."""
    if len(texts) <= n:
        return list(texts)
    idx = np.linspace(0, len(texts) - 1, n).round().astype(int)
    return [texts[i] for i in idx]


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------

@dataclass
class ModelInfo:
    path: str
    content: bytes
    model: object = field(repr=False)
    meta: dict | None
    stats: dict


def analyze(path: str, probe_text: str = DEFAULT_TEXTS[1]) -> ModelInfo:
    """Static figures of one model file: bytes, parameters, MACs, op counts.

    Raises:
      FileNotFoundError: no such file.
      ModelFileError: corrupt or unloadable model (names the file).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if not p.is_file():
        raise ModelFileError(f"{path}: not a file")
    content = p.read_bytes()
    model = parse_model(content, str(path))
    meta = _read_our_metadata(content, str(path))
    shapes = runtime_shapes(content, str(path), probe_text)
    macs, by_op, uncounted = count_macs(model, shapes)
    counted = count_parameters(model)
    params = counted
    source = "graph"
    if meta is not None and isinstance(meta.get("parameters"), int):
        params, source = int(meta["parameters"]), "metadata"
    sg = model.subgraphs[0]
    inputs = [{"name": (sg.tensors[i].name or b"").decode("utf-8", "replace"),
               "shape": shapes.get(int(i), [])} for i in sg.inputs]
    stats = {"path": str(path), "realpath": os.path.realpath(path), "bytes": len(content), "parameters": params,
             "parameters_source": source, "constant_elements": counted, "macs": macs,
             "macs_by_op": by_op, "uncounted_ops": sorted(set(uncounted)),
             "ops": _op_counts(model), "subgraphs": len(model.subgraphs), "inputs": inputs,
             "has_projection": any(n == "CUSTOM:" + PROJECTION_OP for n in _op_counts(model))}
    if meta is not None:
        stats["metadata"] = {k: meta.get(k) for k in ("model", "size", "dataset", "languages")
                             if k in meta}
    return ModelInfo(str(path), content, model, meta, stats)


def environment() -> dict:
    """Where the figures were measured."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            m = re.search(r"^(model name|Hardware|CPU part)\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(2).strip() if m else cpu
    except OSError:
        pass
    try:
        from importlib.metadata import version
        litert = version("ai-edge-litert")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        litert = "unknown"
    return {"machine": platform.machine(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "ai_edge_litert": litert,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def benchmark(paths: Sequence[str], threads: Sequence[int] = (1, 4),
              texts: Sequence[str] | None = None, runs: int = 200, warmup: int = 20,
              memory: bool = True, projection_share: bool = True,
              op_resolver: str = "default") -> dict:
    """Benchmark one or more models (several: comparison mode, interleaved).

    Args:
      paths: ``.tflite`` files; the first is the reference of ``ratios``.
      threads: interpreter thread counts to time (each >= 1).
      texts: utterances (default ``DEFAULT_TEXTS``); round r uses ``texts[r % len]``.
      runs: timed runs per model and thread count (>= 1).
      warmup: untimed rounds before (>= 0).
      memory: measure RSS in a subprocess per model (at ``threads[0]``).
      projection_share: time the projection-only slice of models that have one.
      op_resolver: TFLite kernels to run (``ops.OP_RESOLVERS``; ``"reference"``
        is much slower, meant for checking results, not for timing an app).

    Returns:
      ``{"environment", "settings", "models": [per-model dict], "ratios"}``
      (see module doc; times in ms, sizes in bytes).

    Raises:
      FileNotFoundError, ModelFileError: a model is missing/corrupt/unloadable.
      BenchmarkError: bad options.
    """
    if not paths:
        raise BenchmarkError("give at least one .tflite model")
    threads = list(dict.fromkeys(int(t) for t in threads))
    if not threads or min(threads) < 1:
        raise BenchmarkError(f"thread counts must be >= 1, got {threads}")
    if runs < 1 or warmup < 0:
        raise BenchmarkError(f"need runs >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    from .ops import check_op_resolver
    try:
        check_op_resolver(op_resolver)
    except ValueError as e:
        raise BenchmarkError(str(e)) from None
    texts = list(texts if texts is not None else DEFAULT_TEXTS)
    if not texts:
        raise BenchmarkError("no utterances to feed")
    infos = [analyze(p, texts[0]) for p in paths]
    results = [dict(info.stats) for info in infos]
    for res in results:
        res["latency_ms"] = {}
    for t in threads:
        runners: list[Runner] = []
        slots: list[tuple[int, str]] = []
        for i, info in enumerate(infos):
            runners.append(Runner(info.content, t, info.path, op_resolver))
            slots.append((i, "full"))
            if projection_share and info.stats["has_projection"]:
                sub = projection_submodel(info.model)
                runners.append(Runner(sub, t, info.path + " [projection-only slice]",
                                      op_resolver))
                slots.append((i, "projection"))
        times = interleaved_latency(runners, texts, runs, warmup)
        for (i, kind), ms in zip(slots, times):
            if kind == "full":
                results[i]["latency_ms"][str(t)] = percentiles(ms)
            else:
                proj = results[i].setdefault("projection", {"method": "sliced-subgraph"})
                proj.setdefault("latency_ms", {})[str(t)] = percentiles(ms)
        for res in results:
            proj = res.get("projection")
            if proj is not None:
                proj.setdefault("share", {})[str(t)] = (
                    proj["latency_ms"][str(t)]["p50"] / res["latency_ms"][str(t)]["p50"])
                proj.setdefault("share_of_min", {})[str(t)] = (
                    proj["latency_ms"][str(t)]["min"] / res["latency_ms"][str(t)]["min"])
        del runners
    if memory:
        for res, info in zip(results, infos):
            res["memory"] = measure_memory(info.path, threads[0], texts,
                                           min(runs, 100), min(warmup, 10),
                                           op_resolver=op_resolver)
    out = {"environment": environment(),
           "settings": {"threads": threads, "runs": runs, "warmup": warmup,
                        "op_resolver": op_resolver,
                        "texts": len(texts), "batch": 1,
                        "timed": "set_tensor(inputs) + invoke(), Python binding",
                        "interleaved": len(paths) > 1},
           "models": results}
    if len(results) > 1:
        out["ratios"] = ratios(results)
    return out


def ratios(results: Sequence[dict]) -> list[dict]:
    """Each model's figures divided by the first model's (None where undefined)."""
    ref = results[0]

    def div(a, b):
        return None if a is None or not b else a / b

    out = []
    for r in results:
        d = {"path": r["path"], "bytes": div(r["bytes"], ref["bytes"]),
             "parameters": div(r["parameters"], ref["parameters"]),
             "macs": div(r["macs"], ref["macs"]), "latency_p50": {}}
        for t, lat in r["latency_ms"].items():
            d["latency_p50"][t] = div(lat["p50"], ref["latency_ms"].get(t, {}).get("p50"))
        if "memory" in r and "memory" in ref:
            d["peak_increase_bytes"] = div(r["memory"]["peak_increase_bytes"],
                                           ref["memory"]["peak_increase_bytes"])
        out.append(d)
    return out


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def _fmt_int(n) -> str:
    return "-" if n is None else f"{int(n):,}"


def _fmt_mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (one row per model and thread count)."""
    header = ["model", "bytes", "params", "MACs", "threads", "min ms", "p50 ms", "p90 ms", "p99 ms",
              "proj share", "load MiB", "peak +MiB"]
    rows = []
    ratio_by_path = {r["path"]: r for r in result.get("ratios", [])}
    for r in result["models"]:
        for t, lat in r["latency_ms"].items():
            share = r.get("projection", {}).get("share", {}).get(t)
            mem = r.get("memory", {})
            p50 = f"{lat['p50']:.3f}"
            ratio = ratio_by_path.get(r["path"], {}).get("latency_p50", {}).get(t)
            if ratio is not None and len(result["models"]) > 1:
                p50 += f" (x{ratio:.2f})"
            rows.append([os.path.basename(os.path.dirname(r["path"])) + "/"
                         + os.path.basename(r["path"]),
                         _fmt_int(r["bytes"]), _fmt_int(r["parameters"]), _fmt_int(r["macs"]),
                         t, f"{lat['min']:.3f}", p50, f"{lat['p90']:.3f}", f"{lat['p99']:.3f}",
                         "-" if share is None else f"{100 * share:.0f}%",
                         _fmt_mib(mem.get("load_bytes")) if t == str(mem.get("threads")) else "",
                         _fmt_mib(mem.get("peak_increase_bytes"))
                         if t == str(mem.get("threads")) else ""])
    return header, rows


def markdown_table(result: dict) -> str:
    """The summary table as GitHub markdown."""
    header, rows = table_rows(result)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def print_table(result: dict, file=None) -> None:
    """Print the summary table: rich when installed, plain text otherwise."""
    file = file or sys.stdout
    header, rows = table_rows(result)
    env = result["environment"]
    title = (f"{env['machine']} {env['cpu']} ({env['cpu_count']} CPUs), ai-edge-litert "
             f"{env['ai_edge_litert']}, batch 1, {result['settings']['runs']} runs after "
             f"{result['settings']['warmup']} warm-up")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print(title, file=file)
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)), file=file)
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)), file=file)
        return
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="left" if h == "model" else "right")
    for r in rows:
        table.add_row(*r)
    Console(file=file, width=200).print(table)


def _main_child() -> int:
    spec = json.loads(sys.stdin.read())
    print(json.dumps(_memory_child(spec)))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--memory-child"]:
        sys.exit(_main_child())
    from .cli import main as _cli_main
    sys.exit(_cli_main(["benchmark", *sys.argv[1:]]))
