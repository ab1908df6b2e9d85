"""Teachers and knowledge distillation: ``ondevice-nlp teacher`` and ``build --teacher``.

A teacher is any larger model whose per-example soft targets are written to a
folder T that a student build can read (Hinton, Vinyals and Dean 2015,
"Distilling the knowledge in a neural network", arXiv 1503.02531; the pQRNN
paper, Kaliamoorthi et al. 2021, arXiv 2101.08890, trains its projection
student on a teacher's outputs the same way). T holds:

``teacher.json``
    ``{"format": "ondevice-nlp-teacher", "version": 1, "model", "size",
    "parameters", "dataset", "languages", "labels": {"intents": [...],
    "tags": [...]}, "max_tokens": S, "num_examples": N, "texts_sha256",
    "metrics": {"eval": {LANG: ...}, "test": {LANG: ..., "average": ...}},
    "seconds": ...}``; metrics as ``metrics.evaluate`` gives them (fractions).
``soft_targets.npz`` (``numpy.savez``, no pickles)
    ``text_hash`` uint64 [N]: ``text_hashes`` of each training text;
    ``intent_logits`` float32 [N, I] (I = len(labels.intents));
    ``slot_lengths`` int32 [N]: the example's tokens (``projection_ref.tokenize``,
    at most S);
    ``slot_logits`` float16 [sum(slot_lengths), K] (K = len(labels.tags)): the
    per-token BIO-tag logits of example i are rows
    ``sum(slot_lengths[:i]) ..`` + ``slot_lengths[i]``.

Logits, not probabilities, are stored: the student picks the temperature. A
student finds each of its training texts by hash (any order or subset of the
teacher's examples works; a text the teacher never saw is an error) and takes
the teacher's columns of its own labels (a student label the teacher lacks is
an error; teacher-only labels are dropped, which renormalises the teacher's
softmax over the student's labels).

Student loss per head (``DistillLoss``), on logits z (student) and t (teacher):
``(1 - w) * CE(y, z) + w * T^2 * KL(softmax(t / T) || softmax(z / T))``,
the T^2 keeping the soft term's gradient scale independent of T (Hinton et
al. 2015, Sec. 2). Slot terms are per token, weighted by the token mask like
the hard loss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import zipfile

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "ondevice-nlp-teacher"
VERSION = 1
META_FILE = "teacher.json"
TARGETS_FILE = "soft_targets.npz"
TEACHER_MODELS = ("pnlp_mixer", "pqrnn")


class TeacherFileError(ValueError):
    """A teacher folder's file is malformed or does not fit the student's data.

    The message names the file and the field (npz array or JSON key) that is
    wrong, e.g. ``"T/soft_targets.npz, field 'slot_logits': 812 rows, expected
    950 (sum of slot_lengths)"``; attributes ``path``, ``field``, ``detail``.
    """

    def __init__(self, path: str, field: str, message: str):
        self.path, self.field, self.detail = str(path), field, message
        super().__init__(f"{self.path}, field {field!r}: {message}")


# --------------------------------------------------------------------------- file format


def text_hashes(texts) -> np.ndarray:
    """uint64 [N]: first 8 bytes (little endian) of BLAKE2b of each text's UTF-8 bytes.

    ``texts``: str (encoded with ``surrogateescape``) or bytes.
    """
    out = np.empty((len(texts),), np.uint64)
    for i, t in enumerate(texts):
        b = t if isinstance(t, bytes) else t.encode("utf-8", "surrogateescape")
        out[i] = int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "little")
    return out


def texts_fingerprint(hashes: np.ndarray) -> str:
    """SHA-256 hex of the ordered text hashes (uint64 little endian): the training set's id."""
    return hashlib.sha256(np.asarray(hashes, "<u8").tobytes()).hexdigest()


def write_teacher(out: str, meta: dict, texts, intent_logits: np.ndarray,
                  slot_logits: list) -> dict:
    """Write ``out/soft_targets.npz`` and ``out/teacher.json`` (see the module docstring).

    Args:
      meta: teacher.json fields; must hold ``labels`` {"intents", "tags"} and
        ``max_tokens``; ``format``, ``version``, ``num_examples`` and
        ``texts_sha256`` are added.
      texts: N training texts (str), in the order of the logits.
      intent_logits: float [N, I].
      slot_logits: N float arrays [n_i, K], n_i the example's token count.
    Returns the teacher.json dict. Both files are written atomically.

    Raises:
      ValueError: shapes that disagree with each other or with the labels.
    """
    n, (I, K) = len(texts), (len(meta["labels"]["intents"]), len(meta["labels"]["tags"]))
    intent_logits = np.asarray(intent_logits, np.float32)
    if intent_logits.shape != (n, I) or len(slot_logits) != n:
        raise ValueError(f"intent logits {intent_logits.shape} / {len(slot_logits)} slot arrays "
                         f"for {n} texts and {I} intents")
    lengths = np.array([len(s) for s in slot_logits], np.int32)
    flat = (np.concatenate([np.asarray(s, np.float32).reshape(-1, K) for s in slot_logits])
            if n else np.zeros((0, K), np.float32)).astype(np.float16)
    hashes = text_hashes(texts)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, TARGETS_FILE)
    tmp = path + ".tmp.npz"
    np.savez(tmp, text_hash=hashes, intent_logits=intent_logits, slot_lengths=lengths,
             slot_logits=flat)
    os.replace(tmp, path)
    meta = {"format": FORMAT, "version": VERSION, **meta, "num_examples": n,
            "texts_sha256": texts_fingerprint(hashes)}
    from .train import write_json_atomic
    write_json_atomic(os.path.join(out, META_FILE), meta)
    return meta


@dataclasses.dataclass
class TeacherTargets:
    """A validated teacher folder (``load_teacher``); arrays as in the module docstring.

    ``row_starts`` int64 [N + 1]: cumulative ``slot_lengths`` (example i's
    slot rows are ``row_starts[i]:row_starts[i + 1]``).
    """

    folder: str
    meta: dict
    text_hash: np.ndarray
    intent_logits: np.ndarray
    slot_lengths: np.ndarray
    slot_logits: np.ndarray
    row_starts: np.ndarray

    @property
    def targets_path(self) -> str:
        return os.path.join(self.folder, TARGETS_FILE)


def _read_meta(folder: str) -> dict:
    path = os.path.join(folder, META_FILE)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"teacher folder {folder} does not exist "
                                "(make one with `ondevice-nlp teacher --out ...`)")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: not a teacher folder")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TeacherFileError(path, "json", f"not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TeacherFileError(path, "format", f"expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise TeacherFileError(path, "version", f"{meta.get('version')!r}, this code reads "
                                                f"version {VERSION}")
    labels = meta.get("labels")
    for key in ("intents", "tags"):
        v = labels.get(key) if isinstance(labels, dict) else None
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v) \
                or len(set(v)) != len(v):
            raise TeacherFileError(path, f"labels.{key}", "expected a non-empty list of "
                                                          "distinct strings")
    for key in ("max_tokens", "num_examples"):
        v = meta.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise TeacherFileError(path, key, f"expected an int >= 0, got {v!r}")
    return meta


def load_teacher(folder: str) -> TeacherTargets:
    """Read and check a teacher folder (teacher.json + soft_targets.npz).

    Checks every field's presence, dtype kind, shape against teacher.json's
    label counts and ``num_examples``, ``slot_lengths`` in [0, max_tokens],
    finite logits and the text fingerprint.

    Raises:
      FileNotFoundError: the folder or a file is missing.
      TeacherFileError: a malformed, truncated or inconsistent file (message
        names the file and the field).
    """
    meta = _read_meta(folder)
    path = os.path.join(folder, TARGETS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing (the teacher run did not finish?)")
    n, I, K = meta["num_examples"], len(meta["labels"]["intents"]), len(meta["labels"]["tags"])
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in ("text_hash", "intent_logits", "slot_lengths", "slot_logits"):
                if key not in z.files:
                    raise TeacherFileError(path, key, f"missing (arrays present: {z.files})")
                try:
                    arrays[key] = z[key]
                except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
                    raise TeacherFileError(path, key, f"unreadable, the file is truncated or "
                                                      f"corrupt ({e})") from None
    except TeacherFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise TeacherFileError(path, "file", f"not a readable .npz, truncated or corrupt "
                                             f"({e})") from None

    def check(key, kinds, shape):
        a = arrays[key]
        if a.dtype.kind not in kinds:
            raise TeacherFileError(path, key, f"dtype {a.dtype}, expected kind {kinds!r}")
        if a.shape != shape:
            raise TeacherFileError(path, key, f"shape {a.shape}, expected {shape} "
                                              f"(num_examples and label counts of {META_FILE})")

    check("text_hash", "u", (n,))
    check("intent_logits", "f", (n, I))
    check("slot_lengths", "iu", (n,))
    lengths = arrays["slot_lengths"].astype(np.int64)
    if n and (lengths.min() < 0 or lengths.max() > meta["max_tokens"]):
        raise TeacherFileError(path, "slot_lengths", f"values outside [0, {meta['max_tokens']}]")
    starts = np.concatenate([[0], np.cumsum(lengths)])
    check("slot_logits", "f", (int(starts[-1]), K))
    for key in ("intent_logits", "slot_logits"):
        if not np.isfinite(arrays[key]).all():
            raise TeacherFileError(path, key, "non-finite values (NaN or inf)")
    want = meta.get("texts_sha256")
    if want is not None and texts_fingerprint(arrays["text_hash"]) != want:
        raise TeacherFileError(path, "text_hash", f"fingerprint differs from {META_FILE}'s "
                                                  "texts_sha256: files of different runs?")
    return TeacherTargets(folder, meta, arrays["text_hash"], arrays["intent_logits"],
                          lengths, arrays["slot_logits"], starts)


@dataclasses.dataclass
class StudentTargets:
    """Teacher logits aligned with a student's training arrays (``train.Encoded``), row for row.

    intent_logits: float32 [N, I_student]; slot_lengths: int32 [N] (the
    student's token counts); slot_logits: float16 [sum(slot_lengths), K_student].
    """

    intent_logits: np.ndarray
    slot_lengths: np.ndarray
    slot_logits: np.ndarray


def _columns(targets: TeacherTargets, key: str, student: list) -> np.ndarray:
    teacher = targets.meta["labels"][key]
    pos = {x: i for i, x in enumerate(teacher)}
    missing = [x for x in student if x not in pos]
    if missing:
        raise TeacherFileError(os.path.join(targets.folder, META_FILE), f"labels.{key}",
                               f"the teacher has no {key} {missing[:5]} ({len(missing)} missing) "
                               "that the student's training data has")
    return np.array([pos[x] for x in student], np.int64)


def align_targets(targets: TeacherTargets, texts, lengths: np.ndarray, intents: list,
                  tags: list, max_tokens: int) -> StudentTargets:
    """The teacher's logits for the student's training examples, in the student's order.

    Args:
      texts: N student training texts (str or UTF-8 bytes).
      lengths: int [N] the student's token counts (at most ``max_tokens``).
      intents, tags: the student's label vocabularies (``train.Labels``).
      max_tokens: the student's S.

    Raises:
      TeacherFileError: a text without soft targets (field ``text_hash``), a
        student label the teacher lacks (``labels.*``), or token counts that
        disagree (``slot_lengths``: the teacher's S is smaller than the
        student's, or a different tokenizer).
    """
    path = targets.targets_path
    row_of = {}
    for i, h in enumerate(targets.text_hash.tolist()):
        row_of.setdefault(h, i)
    hashes = text_hashes(texts).tolist()
    rows = np.array([row_of.get(h, -1) for h in hashes], np.int64)
    missing = np.flatnonzero(rows < 0)
    if len(missing):
        t = texts[missing[0]]
        t = t.decode("utf-8", "replace") if isinstance(t, bytes) else t
        raise TeacherFileError(path, "text_hash", f"{len(missing)} of {len(texts)} training texts "
                               f"have no soft targets, e.g. {t!r}: the teacher ran on other data "
                               "(dataset, languages, --max-train-examples, or --augment-slots "
                               "and --seed, differ)")
    icols = _columns(targets, "intents", intents)
    tcols = _columns(targets, "tags", tags)
    lengths = np.asarray(lengths, np.int64)
    t_len = targets.slot_lengths[rows]
    ok = (t_len == lengths) | ((lengths == max_tokens) & (t_len > lengths))
    if not ok.all():
        j = int(np.flatnonzero(~ok)[0])
        raise TeacherFileError(path, "slot_lengths", f"{int((~ok).sum())} examples' token counts "
                               f"differ from the student's, e.g. {texts[j]!r}: teacher "
                               f"{int(t_len[j])}, student {int(lengths[j])} (teacher max_tokens "
                               f"{targets.meta['max_tokens']}, student {max_tokens})")
    # row indices of the first lengths[i] slot rows of each example's teacher rows
    starts = np.repeat(targets.row_starts[rows], lengths)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    slot = targets.slot_logits[starts + within][:, tcols].astype(np.float16)
    return StudentTargets(targets.intent_logits[rows][:, icols].astype(np.float32),
                          lengths.astype(np.int32), slot)


# --------------------------------------------------------------------------- the loss


def distill_loss_fn(temperature: float, weight: float):
    """Per-position loss ``f(y_true, y_pred)`` of Hinton et al. (2015), for one head.

    y_true float32 [..., 1 + C]: column 0 the hard label id, columns 1.. the
    teacher's logits t; y_pred float32 [..., C]: the student's logits z.
    Returns float32 [...]:
    ``(1 - w) * CE(label, z) + w * T^2 * KL(softmax(t/T) || softmax(z/T))``.

    Raises:
      ValueError: temperature <= 0 or weight outside [0, 1].
    """
    import tensorflow as tf

    if not temperature > 0:
        raise ValueError(f"distill temperature must be > 0, got {temperature}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distill weight must be in [0, 1], got {weight}")
    T, w = float(temperature), float(weight)

    def fn(y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        hard = tf.cast(y_true[..., 0], tf.int32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=hard, logits=y_pred)
        log_p = tf.nn.log_softmax(y_true[..., 1:] / T, axis=-1)
        log_q = tf.nn.log_softmax(y_pred / T, axis=-1)
        kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
        return (1.0 - w) * ce + (w * T * T) * kl

    return fn


def distill_losses(temperature: float, weight: float) -> list:
    """[intent loss, slot loss] ``keras.losses.Loss`` objects for ``train.compile_model``.

    Each wraps ``distill_loss_fn`` with Keras' default reduction (sum of the
    sample-weighted per-position losses over the batch size, as for the hard
    cross-entropy; the slot weights are the token mask scaled by
    ``make_dataset``).
    """
    import tf_keras as keras

    fn = distill_loss_fn(temperature, weight)

    class DistillLoss(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return fn(y_true, y_pred)

    return [DistillLoss(name="intent_distill"), DistillLoss(name="slot_distill")]


def percent_of_teacher(student: dict, teacher: dict) -> dict:
    """The student's test metrics as a percentage of the teacher's, per language and average.

    student, teacher: {LANG: {"intent_accuracy", "slot_f1", "exact_match", ...}}
    (fractions). Returns {LANG: {metric: 100 * student / teacher}} for the
    languages both have (None where the teacher scored 0), not rounded, as the
    other figures of metrics.json, so text made from them rounds once.
    """
    out = {}
    for lang, s in student.items():
        t = teacher.get(lang)
        if not isinstance(t, dict):
            continue
        out[lang] = {k: (100.0 * s[k] / t[k] if t.get(k) else None)
                     for k in ("intent_accuracy", "slot_f1", "exact_match")}
    return out


# --------------------------------------------------------------------------- the teacher command


@dataclasses.dataclass
class TeacherArgs:
    """Options of ``ondevice-nlp teacher`` (see ``cli.py`` for their help)."""

    dataset: str
    data_dir: str
    languages: list
    out: str
    model: str = "pnlp_mixer"
    size: str = "teacher"
    epochs: int = 6  # MTOP en, ~10 M pNLP-Mixer: roughly 6-8 min an epoch on 2 shared cores
    batch_size: int = 64
    lr: float | None = None  # default 1e-3 (from scratch); hub teacher 5e-5 (fine-tuning)
    weight_decay: float = 0.05
    dropout: float | None = None
    patience: int = 3
    seed: int = 0
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    skip_bad_lines: bool = False
    augment_slots: float = 0.0  # ensemble only: also targets for build --augment-slots' copies
    words: str | None = None  # the teachers that train (not ensemble): word list, as build --words


def run_teacher(a: TeacherArgs) -> dict:
    """Train a float teacher and write its soft targets for the training set into ``a.out``.

    The teacher is a large pNLP-Mixer or pQRNN (size ``"teacher"``: ~10 M /
    ~15 M parameters) trained like the float phase of ``pipeline.build``
    (dynamic-length model on length-bucketed batches, AdamW with warm-up and
    cosine decay, early stopping on eval exact match); it is not quantized or
    exported. Returns the teacher.json dict (also written with
    soft_targets.npz, see the module docstring).

    With ``a.words`` (a word list file, as ``build --words``) the projection joins
    the letters of those words into one token, so the soft targets fit a student
    built with the same list (Thai; README "Thai read word by word").

    Raises:
      FileNotFoundError / DataError: missing or malformed dataset files.
      ValueError: unknown model or size, no training examples, a bad word list
        (names the file and line).
    """
    import tensorflow as tf
    import tf_keras as keras

    from . import train as T
    from .pipeline import _average, model_spec, prepare_data, with_word_list

    if a.model not in TEACHER_MODELS:
        raise ValueError(f"unknown teacher model {a.model!r}; available: {TEACHER_MODELS}")
    spec = model_spec(a.model)
    t0 = time.time()
    np.random.seed(a.seed)
    tf.random.set_seed(a.seed)
    keras.utils.set_random_seed(a.seed)
    size = spec.get_size(a.size, None, a.dropout)
    if a.words:  # the student's tokens: one per dictionary word (build --words)
        size = dataclasses.replace(size, projection=with_word_list(size.projection, a.words))
    proj = size.projection
    S = proj.max_tokens
    data = prepare_data(a, S, proj)
    train_ex, labels, enc = data.train_ex, data.labels, data.enc_train
    evals, tests = data.evals, data.tests
    model = spec.build(size, num_intents=len(labels.intents), num_tags=len(labels.tags),
                       dynamic=True)
    n_params = int(model.count_params())
    log.info("teacher %s %s: %d parameters; %d training examples", a.model, a.size, n_params,
             len(train_ex))
    steps = T.steps_for(len(train_ex), a.batch_size)
    ds = T.make_dataset(enc, proj, a.batch_size, shuffle=True, seed=a.seed, cut_to_longest=True,
                        bucket=True)
    T.compile_model(model, a.lr or 1e-3, steps * a.epochs, warmup_steps=min(steps, 200),
                    weight_decay=a.weight_decay)
    ckpt = os.path.join(a.out, "checkpoints")
    os.makedirs(ckpt, exist_ok=True)
    cb = T.EvalExactMatch(evals, labels, proj, a.patience,
                          os.path.join(ckpt, "teacher.weights.h5"), "teacher")
    train_s = T.fit(model, ds, a.epochs, cb, T.keras_verbosity())
    metrics = {}
    for name, data in (("eval", evals), ("test", tests)):
        metrics[name] = {lang: T.evaluate_keras(model, ex, e, labels, proj)
                         for lang, (ex, e) in data.items()}
        metrics[name]["average"] = _average(metrics[name])
    intent_logits, slot_logits = predict_logits(model, enc, proj)
    meta = {"model": a.model, "size": a.size, "parameters": n_params, "dataset": a.dataset,
            "languages": a.languages, "labels": {"intents": labels.intents, "tags": labels.tags},
            "max_tokens": S, "projection": proj.summary(), "metrics": metrics,
            "eval_history": cb.history, "epochs_run": len(cb.history),
            "seconds": {"training": round(train_s, 1), "total": round(time.time() - t0, 1)}}
    meta = write_teacher(a.out, meta, [e.text for e in train_ex], intent_logits, slot_logits)
    avg = metrics["test"]["average"]
    log.info("teacher test: exact match %.4f, intent accuracy %.4f, slot F1 %.4f; wrote %s",
             avg["exact_match"], avg["intent_accuracy"], avg["slot_f1"],
             os.path.join(a.out, TARGETS_FILE))
    return meta


def predict_logits(model, enc, proj) -> tuple[np.ndarray, list]:
    """Teacher logits on encoded examples: (intent float32 [N, I], N slot arrays [n_i, K]).

    n_i is example i's token count (``enc.mask``); inference mode.
    """
    n = len(enc.texts)
    lengths = enc.mask.sum(axis=1).astype(np.int64)
    intent = None
    slots = [None] * n
    from .train import iter_logits

    for rows, il, sl in iter_logits(model, enc, proj):
        if intent is None:
            intent = np.zeros((n, il.shape[1]), np.float32)
        intent[rows] = il
        for j, r in enumerate(rows):
            slots[r] = sl[j, :lengths[r]]
    return intent, slots
