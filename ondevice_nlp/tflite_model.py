"""Reading and running our exported ``.tflite`` files (no TensorFlow needed).

A model file carries everything evaluate/predict need: the projection config
is a constant input of the custom op, and the label vocabularies plus settings
are JSON in the flatbuffer's ``metadata`` list under the name
``METADATA_NAME`` (TFLite schema: ``Model.metadata`` -> ``Buffer``).

Signature ``serving_default``: input ``text`` string [B] (raw UTF-8); outputs
``intent_probs`` float32 [B, C], ``slot_tags`` int32 [B, S] (per-token argmax
BIO tag ids), ``token_offsets`` int32 [B, S, 2] (UTF-8 byte start/end of each
token), ``token_mask`` float32 [B, S] and, in files written since the decoder
change, ``slot_logits`` float32 [B, S, K] (the int8 slot scores, dequantized).

Decoding: when ``slot_logits`` is present, slots come from the best valid IOB2
tag sequence over each utterance's tokens (``tagging.viterbi_bio``, O(S K^2)
per utterance, about 20 lines to port to an app); otherwise from ``slot_tags``.
Files with ``labels.intent_tags`` in their metadata (bool [I, K], packed bits)
choose the intent and the tags together (``tagging.joint_decode``: Viterbi for
each of the top-3 intents over the tags that intent was trained with). Files
with ``labels.span_trims`` (``tagging.SpanTrims``, ``{"start": [[type, token,
n], ...], "end": [...]}``) then move slot edges inside a token where the
training data put them there (MTOP Spanish ``Recuérda|me``), whatever the decoding.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Sequence

import numpy as np

METADATA_NAME = "ondevice_nlp"
METADATA_FORMAT = "ondevice_nlp/1"


SIGNATURE_KEY = "serving_default"
INPUT_NAME = "text"
OUTPUT_NAMES = ("intent_probs", "slot_tags", "token_offsets", "token_mask")
SLOT_LOGITS = "slot_logits"  # optional output (older files lack it)


class ModelFileError(ValueError):
    """A ``.tflite`` file that is missing, corrupt, or not one of ours."""


def _check_labels(meta: dict, path: str) -> tuple[list[str], list[str]]:
    """(intents, tags) from our metadata, checked to be non-empty lists of strings."""
    labels = meta.get("labels")
    out = []
    for key in ("intents", "tags"):
        values = labels.get(key) if isinstance(labels, dict) else None
        if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
            raise ModelFileError(f"{path}: metadata field 'labels.{key}' must be a non-empty list "
                                 f"of strings; the file is corrupt or was not written by "
                                 "`ondevice-nlp build`")
        out.append(values)
    return out[0], out[1]


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def check_tflite_bytes(buf: bytes, path: str) -> None:
    """Raise ModelFileError unless ``buf`` looks like a TFLite flatbuffer."""
    from .ops import check_flatbuffer

    try:
        check_flatbuffer(buf[:8], len(buf), path)
    except ValueError as e:
        raise ModelFileError(f"{e}; the file is corrupt or of another kind") from None


def _buffer_bytes(model, index: int, buf: bytes) -> bytes:
    """The bytes of the flatbuffer ``model``'s buffer ``index``: stored inline, or after the
    flatbuffer at an offset (files over 2 GB); b"" for an empty buffer."""
    b = model.Buffers(index)
    if b.Offset() > 1:
        return bytes(buf[b.Offset():b.Offset() + b.Size()])
    return b.DataAsNumpy().tobytes() if b.DataLength() else b""


def _parse_model(buf: bytes, path: str, read):
    """``read(schema, model)`` on the parsed flatbuffer ``buf``; a ModelFileError naming
    ``path`` for a file that is not TFLite or that the flatbuffer reader fails on (truncated
    or corrupt: flatbuffers raises assorted errors); ``read``'s own ModelFileError passes."""
    check_tflite_bytes(buf, path)
    schema = _schema()
    try:
        return read(schema, schema.Model.GetRootAs(buf, 0))
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(f"{path}: cannot parse the TFLite flatbuffer ({e!r}); "
                             "the file is truncated or corrupt") from e


def read_metadata(buf: bytes, path: str = "<bytes>") -> dict:
    """Our JSON metadata from a ``.tflite`` flatbuffer.

    Raises:
      ModelFileError: not a TFLite file, unparsable flatbuffer, or no
        ``ondevice_nlp`` metadata (a model not exported by this package).
    """
    def read(schema, model):
        for i in range(model.MetadataLength()):
            md = model.Metadata(i)
            if md.Name() == METADATA_NAME.encode():
                return json.loads(_buffer_bytes(model, md.Buffer(), buf).decode("utf-8"))
        raise ModelFileError(f"{path}: TFLite model has no '{METADATA_NAME}' metadata; "
                             "was it exported by `ondevice-nlp build`?")

    meta = _parse_model(buf, path, read)
    if meta.get("format") != METADATA_FORMAT:
        raise ModelFileError(f"{path}: metadata format {meta.get('format')!r}, "
                             f"expected {METADATA_FORMAT!r}")
    return meta


PROJECTION_OP = "OndeviceProjection"  # the custom op's name (custom_ops/tflite_kernel.cc)


def read_projection_vector(buf: bytes, path: str = "<bytes>") -> np.ndarray | None:
    """The projection config vector of a ``.tflite`` flatbuffer: the constant int32 [n] second
    input of its first ``OndeviceProjection`` custom op (``projection_ref.ProjectionConfig
    .to_vector``; with a word dictionary it holds the word hashes, which the metadata does not).

    Returns None when the file has no such op (e.g. a model without our projection).

    Raises:
      ModelFileError: not a TFLite file, an unparsable flatbuffer, or the op's config input
        is not a constant int32 vector (the file is corrupt).
    """
    def read(schema, model):
        for g in range(model.SubgraphsLength()):
            graph = model.Subgraphs(g)
            for i in range(graph.OperatorsLength()):
                op = graph.Operators(i)
                code = model.OperatorCodes(op.OpcodeIndex())
                if code.CustomCode() != PROJECTION_OP.encode() or op.InputsLength() < 2:
                    continue
                tensor = graph.Tensors(op.Inputs(1))
                data = _buffer_bytes(model, tensor.Buffer(), buf)
                if tensor.Type() != schema.TensorType.INT32 or not data or len(data) % 4:
                    raise ModelFileError(f"{path}: the {PROJECTION_OP} op's config input is not "
                                         "a constant int32 vector; the file is corrupt")
                return np.frombuffer(data, dtype="<i4").astype(np.int32)
        return None

    return _parse_model(buf, path, read)


def add_metadata(buf: bytes, meta: dict) -> bytes:
    """Return a copy of a ``.tflite`` flatbuffer with ``meta`` stored as JSON metadata."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    data = json.dumps({"format": METADATA_FORMAT, **meta}, ensure_ascii=False).encode("utf-8")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(buf) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_atomic(path: str, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file and rename."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _char_bytes(ch: str) -> bytes:
    """UTF-8 bytes of one character; lone surrogates from ``surrogateescape`` decoding give
    back their byte, other lone surrogates their 3-byte (ill-formed) encoding."""
    try:
        return ch.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return ch.encode("utf-8", "surrogatepass")


def _text_bytes(text) -> bytes:
    """UTF-8 bytes of a text given as bytes (unchanged) or str (see ``_char_bytes``)."""
    if isinstance(text, bytes):
        return text
    if not isinstance(text, str):
        raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return b"".join(map(_char_bytes, text))


class TFLiteModel:
    """An exported model loaded in ai-edge-litert with our custom op registered.

    Thread safety: one interpreter per calling thread (created on first use in
    that thread), so ``predict`` may be called from several threads at once.

    Batch sizes: each thread keeps one interpreter per batch size it has run
    (at most ``MAX_BATCH_SIZES``, least recently used dropped), so no
    interpreter has its input resized after it has run. ai-edge-litert 2.3's
    default XNNPACK delegate sometimes returns wrong outputs on the first run
    after such a resize (seen here: a fresh interpreter run at batch 1, then
    at batch 6, while other threads run interpreters of the same model; now and
    then, more often under load, never with ``op_resolver="no-delegates"``;
    README "Hostile input", ``tools/thread_stress.py``).

    Raises (constructor):
      FileNotFoundError: no such file.
      ModelFileError: corrupt file, not ours, or the interpreter refuses it.
    """

    DECODINGS = ("joint", "viterbi", "argmax")
    MAX_BATCH_SIZES = 4  # interpreters kept per thread, one per batch size

    def __init__(self, path: str, num_threads: int = 1, op_resolver: str = "default",
                 decoding: str = "joint"):
        """``op_resolver``: TFLite kernels, one of ``ops.OP_RESOLVERS`` (``"reference"``:
        portable reference kernels, same int8 outputs on x86 and aarch64, slower).
        ``decoding`` (see ``decode_batch``): ``"joint"`` (default), ``"viterbi"``
        (argmax intent, constrained Viterbi over all tags) or ``"argmax"`` (argmax
        intent, the file's per-token argmax ``slot_tags``); the last two are for
        ablations. Raises ValueError for another value."""
        from .ops import check_op_resolver
        if decoding not in self.DECODINGS:
            raise ValueError(f"decoding must be one of {self.DECODINGS}, got {decoding!r}")
        self.decoding = decoding
        self.op_resolver = check_op_resolver(op_resolver)
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such model file")
        with open(self.path, "rb") as f:
            self.buf = f.read()
        self.meta = read_metadata(self.buf, self.path)
        self.intents, self.tags = _check_labels(self.meta, self.path)
        from .tagging import (SpanTrims, bio_allowed_transitions, unpack_bits, unpack_transitions,
                              unpack_transition_scores)
        seen = self.meta["labels"].get("transitions")
        field = "labels.tags"
        try:
            if seen is not None:  # files since the seen-transition constraint (see tagging)
                field = "labels.transitions"
                seen = unpack_transitions(seen, len(self.tags))
            field = "labels.tags"
            self.allowed = bio_allowed_transitions(self.tags, seen)
            self.intent_tags = None  # files since joint decoding (see tagging.joint_decode)
            if self.meta["labels"].get("intent_tags") is not None:
                field = "labels.intent_tags"
                self.intent_tags = unpack_bits(self.meta["labels"]["intent_tags"],
                                               (len(self.intents), len(self.tags)), "intent tag mask")
            self.crf_transitions = None  # files of `build --crf` (ondevice_nlp.crf)
            if self.meta["labels"].get("crf_transitions") is not None:
                field = "labels.crf_transitions"
                self.crf_transitions = unpack_transition_scores(
                    self.meta["labels"]["crf_transitions"], self.allowed)
            self.span_trims = None  # files since slot edges inside tokens (tagging.SpanTrims)
            if self.meta["labels"].get("span_trims") is not None:
                field = "labels.span_trims"
                self.span_trims = SpanTrims.from_json(
                    self.meta["labels"]["span_trims"], {t[2:] for t in self.tags if t != "O"})
        except ValueError as e:
            raise ModelFileError(f"{self.path}: metadata field {field!r}: {e}; the file is "
                                 "corrupt") from None
        if "O" not in self.tags:
            raise ModelFileError(f"{self.path}: metadata field 'labels.tags' lacks the 'O' tag; "
                                 "the file is corrupt")
        self.num_threads = num_threads
        self._local = threading.local()
        runner = self._new_runner()  # fail early, in the constructor, on a model the runtime refuses
        # > 0: the file's fixed input batch (the BiLSTM's 1), which run() feeds in pieces
        self.fixed_batch = int(runner.get_input_details()[INPUT_NAME]["shape_signature"][0])
        self._local.runners = {self.fixed_batch if self.fixed_batch > 0 else 1: runner}

    def projection_config(self):
        """The ``projection_ref.ProjectionConfig`` the file's projection op runs with, from
        its config vector (:func:`read_projection_vector`; with a word dictionary it holds
        the word hashes, which the metadata gives only the number of), checked against the
        metadata's ``projection``; None for a file without the op whose metadata gives no
        word dictionary.

        Raises:
          ModelFileError: the vector is not a config vector, the metadata gives a word
            dictionary but the file has no projection op, or the metadata and the op
            describe different projections (names the fields; the file is corrupt).
        """
        from .projection_ref import ProjectionConfig

        meta = self.meta.get("projection")
        meta = meta if isinstance(meta, dict) else {}
        vec = read_projection_vector(self.buf, self.path)
        if vec is None:
            if meta.get("words"):
                raise ModelFileError(f"{self.path}: the metadata gives {meta['words']} words but "
                                     "the file has no projection op; the file is corrupt")
            return None
        try:
            proj = ProjectionConfig.from_vector(vec)
        except ValueError as e:
            raise ModelFileError(f"{self.path}: the projection op's config vector: {e}; the file "
                                 "is corrupt") from None
        diff = proj.summary_differences(meta) if meta else []
        if diff:
            raise ModelFileError(
                f"{self.path}: the metadata and the projection op's config differ ("
                + "; ".join(f"{k} {theirs} in the metadata, {ours} in the op"
                            for k, theirs, ours in diff) + "); the file is corrupt")
        return proj

    def _runner(self, batch: int = 1):
        """This thread's signature runner for ``batch`` texts per call (see the class doc:
        one interpreter per thread and batch size); fixed-batch files use one for all."""
        runners = getattr(self._local, "runners", None)
        if runners is None:
            runners = self._local.runners = {}
        if self.fixed_batch > 0:
            batch = self.fixed_batch
        runner = runners.pop(batch, None)
        if runner is None:
            runner = self._new_runner()
            if len(runners) >= self.MAX_BATCH_SIZES:
                del runners[next(iter(runners))]  # the least recently used
        runners[batch] = runner  # (re)inserted last: most recently used
        return runner

    def _new_runner(self):
        """A signature runner on a new interpreter of this file (input at its default shape).

        Raises ModelFileError when the runtime refuses the file or its signature is not ours."""
        from . import ops
        try:
            interp = ops.make_interpreter(model_content=self.buf, num_threads=self.num_threads,
                                          op_resolver=self.op_resolver)
            interp.allocate_tensors()  # unresolved ops and bad shapes fail here, not later
            runner = interp.get_signature_runner(SIGNATURE_KEY)
            self._check_signature(runner)
        except ModelFileError:
            raise
        except Exception as e:  # noqa: BLE001  the runtime's wrapper raises assorted errors
            # on corrupt files (ValueError, RuntimeError, UnicodeDecodeError on a tensor name)
            raise ModelFileError(f"{self.path}: the TFLite runtime cannot load this model: "
                                 f"{ops.explain_interpreter_error(e)}") from e
        return runner

    def _check_signature(self, runner) -> None:
        """The signature has our input and outputs, with as many intents as the labels."""
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        missing = [n for n in OUTPUT_NAMES if n not in outputs]
        if set(inputs) != {INPUT_NAME} or missing:
            raise ModelFileError(
                f"{self.path}: signature {SIGNATURE_KEY!r} has inputs {sorted(inputs)} and outputs "
                f"{sorted(outputs)}; expected input {INPUT_NAME!r} and outputs {list(OUTPUT_NAMES)}"
                ": not a model exported by `ondevice-nlp build`")
        shape = list(outputs["intent_probs"].get("shape_signature", outputs["intent_probs"]["shape"]))
        if len(shape) != 2 or shape[-1] != len(self.intents):
            raise ModelFileError(f"{self.path}: output 'intent_probs' has shape {shape} but the "
                                 f"metadata lists {len(self.intents)} intents; the file is corrupt")

    def run(self, texts: Sequence) -> dict:
        """Run the signature on a batch; returns the raw output arrays (see module doc).

        Raises:
          ValueError: empty batch. TypeError: an item is neither str nor bytes.
          ModelFileError: the runtime failed to run the model (e.g. a corrupted
            constant the kernels reject); any text, even invalid UTF-8, is valid input.
        """
        arr = np.array([_text_bytes(t) for t in texts], dtype=object)
        if arr.size == 0:
            raise ValueError("empty batch")
        runner = self._runner(int(arr.size))
        from . import ops
        try:
            fixed = self.fixed_batch
            # a fixed-batch model (the BiLSTM; export makes fixed batches of 1 only): in pieces
            if fixed > 0 and arr.size != fixed:
                parts = [runner(text=arr[i:i + fixed]) for i in range(0, arr.size, fixed)]
                out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            else:
                out = runner(text=arr)
        except (RuntimeError, ValueError) as e:
            raise ModelFileError(f"{self.path}: the TFLite runtime failed to run this model: "
                                 f"{' '.join(str(ops.explain_interpreter_error(e)).split())}") from e
        if SLOT_LOGITS in out and out[SLOT_LOGITS].shape[-1] != len(self.tags):
            raise ModelFileError(f"{self.path}: output {SLOT_LOGITS!r} has {out[SLOT_LOGITS].shape[-1]} "
                                 f"tags but the metadata lists {len(self.tags)}; the file is corrupt")
        bad = out["slot_tags"][(out["slot_tags"] < 0) | (out["slot_tags"] >= len(self.tags))]
        if bad.size:
            raise ModelFileError(f"{self.path}: the model output slot tag id {int(bad[0])}, but "
                                 f"the metadata lists {len(self.tags)} tags; the file is corrupt")
        return out

    def decode_batch(self, texts: Sequence) -> list[tuple[str, float, list]]:
        """Run a batch and decode it: per text (intent, its probability, list of Slot).

        Intent and slots are decoded together from the intent probabilities and
        slot logits (``tagging.joint_decode``: each of the top-3 intents with
        constrained IOB2 Viterbi over the tags it was trained with), or, in files
        without ``labels.intent_tags``, the argmax intent and constrained Viterbi
        over all tags (older files yet: the argmax tags; ``decoding`` picks a
        simpler decoder on purpose); files of ``build --crf`` add their CRF
        transition scores (``labels.crf_transitions``) to every path; then the
        file's ``labels.span_trims``, if
        any, move slot edges inside tokens. Character offsets into the text (for
        bytes input: into ``bytes.decode("utf-8", "surrogateescape")``).
        """
        from .tagging import bio_to_spans, byte_to_char_offsets, joint_decode

        out = self.run(texts)
        results = []
        for i, t in enumerate(texts):
            s = t if isinstance(t, str) else t.decode("utf-8", "surrogateescape")
            n = int(round(float(out["token_mask"][i].sum())))
            offs = byte_to_char_offsets(s, [tuple(map(int, o)) for o in out["token_offsets"][i][:n]],
                                        lambda ch: len(_char_bytes(ch)))
            probs = out["intent_probs"][i]
            if SLOT_LOGITS in out and self.decoding != "argmax":
                k, ids = joint_decode(probs, out[SLOT_LOGITS][i][:n], self.allowed,
                                      self.intent_tags if self.decoding == "joint" else None,
                                      transition_scores=self.crf_transitions)
            else:
                k, ids = int(np.argmax(probs)), out["slot_tags"][i][:n]
            spans = bio_to_spans(offs, [self.tags[int(j)] for j in ids])
            if self.span_trims:
                spans = self.span_trims.apply(s, offs, spans)
            results.append((self.intents[k], float(probs[k]), spans))
        return results

    def predict_batch(self, texts: Sequence) -> list[dict]:
        """Predictions for a batch of texts (str or UTF-8 bytes).

        Each is ``{"intent", "intent_probability", "slots": [{"type", "text",
        "start", "end"}]}`` with character offsets (see ``decode_batch``).
        """
        results = []
        for t, (intent, prob, spans) in zip(texts, self.decode_batch(texts)):
            s = t if isinstance(t, str) else t.decode("utf-8", "surrogateescape")
            results.append({"intent": intent, "intent_probability": prob,
                            "slots": [{"type": sp.type, "text": s[sp.start:sp.end],
                                       "start": sp.start, "end": sp.end} for sp in spans]})
        return results

    def predict(self, text) -> dict:
        """Prediction for one text; see ``predict_batch``."""
        return self.predict_batch([text])[0]
