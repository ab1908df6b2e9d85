"""The main job: ``ondevice-nlp build`` (train -> QAT -> int8 .tflite -> evaluate).

Writes into OUT:
  ``model.tflite``    the int8 model (written atomically);
  ``metrics.json``    ``{"keras": {LANG: {intent_accuracy, slot_f1, exact_match, n, ...}},
                      "keras_qat": {...}, "tflite": {...}, "model_size_bytes": N, ...}``
                      (fractions in [0, 1]); with ``--teacher``, also ``"distillation"``:
                      the teacher's test metrics and ``percent_of_teacher``;
  ``report.md``       the same as a short human-readable table;
  ``build.log``       the log; ``checkpoints/`` best float and QAT weights, and
                      ``float.done.json`` once the float phase is complete
                      (``--resume`` then starts at QAT from the best float weights),
                      ``qat.done.json`` once QAT is (``--resume`` after both: export
                      and evaluation only, e.g. to write a newer metadata format),
                      ``projection.json`` the projection config vector trained with
                      (``--resume`` with another one stops; the ``.tflite``'s
                      projection op holds the same vector).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import resource
import shutil
import time

import numpy as np

from . import tagging

log = logging.getLogger(__name__)


@dataclasses.dataclass
class BuildArgs:
    """Options of ``ondevice-nlp build`` (see ``cli.py`` for their help)."""

    dataset: str
    data_dir: str
    languages: list
    out: str
    model: str = "pnlp_mixer"
    size: str | None = None  # default: the model's (base, 1mb)
    max_tokens: int | None = None
    epochs: int = 40
    qat_epochs: int = 2
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    dropout: float | None = None  # overrides the size's dropout and feature dropout
    token_dropout: float | None = None  # pnlp_mixer: overrides the size's word dropout
    qat_lr: float = 2e-4
    patience: int = 6
    seed: int = 0
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    representative_examples: int = 200
    skip_bad_lines: bool = False
    resume: bool = False
    words: str | None = None  # word list file: the projection's word dictionary
    teacher: str | None = None  # teacher folder (``ondevice-nlp teacher``): distil from it
    distill_temperature: float = 2.0
    distill_weight: float = 0.5
    augment_slots: float = 0.0  # slot-substituted copies per training utterance (augment.py)
    crf: bool = True  # linear-chain CRF loss and decoding over the slot tags (crf.py)
    ema: float = 0.0  # float phase: keep and score a moving average of the weights (0: off)
    init_from: str | None = None  # earlier build folder: start from its float weights


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How the pipeline builds one kind of model (see ``model_spec``)."""

    default_size: str
    get_size: object      # (name, max_tokens | None, dropout | None) -> size with .projection, .window
    build: object         # (size, num_intents=, num_tags=, dynamic=) -> keras.Model
    copy_weights: object  # (src, dst): dynamic-length <-> static model
    prepare_qat: object   # static model -> model ready for train.quantize_aware
    # True: train.quantize_aware annotates every layer tfmot knows; False: only the layers
    # prepare_qat annotated get QAT (the rest is ranged by the converter's calibration).
    annotate_all: bool = True
    custom_objects: dict | None = None  # the model's layer classes, for tfmot's clone
    export_batch_size: int | None = None  # fixed batch of the .tflite input (None: any)


MODELS = ("pnlp_mixer", "pqrnn", "bilstm", "transformer")


def model_spec(name: str) -> ModelSpec:
    """The pipeline's view of model ``name`` (one of ``MODELS``).

    Raises:
      ValueError: unknown model name.
    """
    if name == "pnlp_mixer":
        from .configs import get_size
        from .models import pnlp_mixer as pm

        def size_for(size_name, max_tokens, dropout):
            size = get_size(size_name, max_tokens)
            if dropout is not None:
                size = dataclasses.replace(size, net=dataclasses.replace(
                    size.net, dropout=dropout, feature_dropout=dropout))
            return size

        def build(size, *, num_intents, num_tags, dynamic):
            return pm.build_pnlp_mixer(size.net, max_tokens=size.projection.max_tokens,
                                       feature_size=size.projection.feature_size,
                                       window=size.window, num_intents=num_intents,
                                       num_tags=num_tags, dynamic_length=dynamic)

        return ModelSpec("base", size_for, build, pm.copy_weights, lambda m: m)
    if name == "pqrnn":
        from .configs import get_size
        from .models import pqrnn as pq

        def size_for(size_name, max_tokens, dropout):
            size = get_size(size_name, max_tokens, pq.QRNN_SIZES, "pqrnn")
            if dropout is not None:
                size = dataclasses.replace(size, net=dataclasses.replace(size.net,
                                                                          dropout=dropout))
            return size

        def build(size, *, num_intents, num_tags, dynamic):
            return pq.build_pqrnn(size.net, max_tokens=None if dynamic else
                                  size.projection.max_tokens,
                                  feature_size=size.projection.feature_size, window=size.window,
                                  num_intents=num_intents, num_tags=num_tags)

        return ModelSpec("1mb", size_for, build, pq.copy_weights, pq.annotate_for_qat)
    if name in ("bilstm", "transformer"):
        from .configs import get_size
        from .models import baselines as bl

        sizes = bl.BILSTM_SIZES if name == "bilstm" else bl.TRANSFORMER_SIZES

        def size_for(size_name, max_tokens, dropout):
            size = get_size(size_name, max_tokens, sizes, name)
            if dropout is not None:
                size = dataclasses.replace(size, net=dataclasses.replace(size.net,
                                                                        dropout=dropout))
            return size

        def build(size, *, num_intents, num_tags, dynamic):
            S = size.projection.max_tokens
            if name == "bilstm":
                return bl.build_bilstm(size.net, max_tokens=None if dynamic else S,
                                       num_intents=num_intents, num_tags=num_tags)
            return bl.build_transformer(size.net, max_tokens=S, num_intents=num_intents,
                                        num_tags=num_tags, dynamic_length=dynamic)

        # TFLite fuses each Keras LSTM into UNIDIRECTIONAL_SEQUENCE_LSTM only at a fixed batch.
        return ModelSpec("1mb", size_for, build, bl.copy_weights,
                         bl.annotate_for_qat, annotate_all=False,
                         custom_objects=bl.CUSTOM_OBJECTS,
                         export_batch_size=1 if name == "bilstm" else None)
    raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")


def _subset(examples, n, seed):
    if n is None or len(examples) <= n:
        return list(examples)
    rng = random.Random(seed)
    return rng.sample(list(examples), n)


def with_word_list(proj, path: str):
    """``proj`` with the word dictionary of a word list file (``build --words``).

    Args:
      proj: a ``projection_ref.ProjectionConfig`` without ``ngram``.
      path: UTF-8 text, one word per line (surrounding whitespace stripped,
        blank lines skipped), each a word of a script written without spaces
        (e.g. Thai; ``projection_ref.word_dictionary``). ``tools/thai_words.py
        --write-words`` writes one from MTOP's training parses.

    Returns:
      ``dataclasses.replace(proj, words=..., word_len=...)``: config version 4,
      whose tokenizer joins the letters of those words into one token.

    Raises:
      FileNotFoundError: no such file.
      ValueError: invalid UTF-8, a line that is not such a word, too many or
        too long words, no word at all, or ``proj.ngram`` > 0; the message
        names the file and line.
    """
    from .projection_ref import word_dictionary, word_letters

    lines = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                word = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid UTF-8 ({exc.reason})") from None
            if not word:
                continue
            try:
                word_letters(word)
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
            lines.append(word)
    if not lines:
        raise ValueError(f"{path}: no words")
    try:
        words, word_len = word_dictionary(lines)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        out = dataclasses.replace(proj, words=words, word_len=word_len)
    except ValueError as exc:
        raise ValueError(f"--words {path}: {exc}") from None
    log.info("word dictionary %s: %d words, up to %d letters each", path, len(words), word_len)
    return out


def load_splits(a) -> tuple[dict, list]:
    """Train/eval/test examples of ``a`` (``BuildArgs`` or ``distill.TeacherArgs``).

    Returns ({split: {language: [Example]}}, the training examples of all
    languages in ``a.languages`` order), each split capped per language at
    ``a.max_train_examples`` / ``a.max_eval_examples`` by a seeded sample.

    Raises:
      FileNotFoundError / DataError: missing or malformed dataset files.
      ValueError: no training examples.
    """
    from .data import load_dataset

    splits = {}
    for split in ("train", "eval", "test"):
        data = load_dataset(a.dataset, a.data_dir, a.languages, split,
                            skip_bad_lines=a.skip_bad_lines)
        cap = a.max_train_examples if split == "train" else a.max_eval_examples
        splits[split] = {lang: _subset(ex, cap, a.seed) for lang, ex in data.items()}
    train_ex = [e for lang in a.languages for e in splits["train"][lang]]
    if not train_ex:
        raise ValueError("no training examples")
    return splits, train_ex


@dataclasses.dataclass
class Prepared:
    """The data of one run, encoded for S tokens (``prepare_data``).

    ``splits``: {split: {language: [Example]}}; ``train_ex``: the training
    examples of all languages; ``labels``: ``train.Labels`` with the tag
    transitions seen in training; ``enc_train``: ``train.Encoded`` of
    ``train_ex``; ``evals`` / ``tests``: {language: (examples, Encoded)}.
    """

    splits: dict
    train_ex: list
    labels: object
    enc_train: object
    evals: dict
    tests: dict


def prepare_data(a, S: int, proj=None) -> Prepared:
    """Load ``a``'s splits (``load_splits``), build the label vocabularies from
    the training set, encode every split for S tokens and record the BIO tag
    transitions seen in training (``tagging.observed_transitions``), for
    ``build`` and the teacher commands alike, and the tags each intent uses
    (``tagging.intent_slot_tags``) for joint decoding, and the slot edges that
    fall inside tokens (``tagging.SpanTrims``). ``proj``: the run's
    ``ProjectionConfig``, whose word dictionary (``build --words``), if any,
    the encoding's tokens follow; None tokenizes without one.

    Raises:
      FileNotFoundError / DataError: missing or malformed dataset files.
      ValueError: no training examples.
    """
    from . import train as T

    splits, train_ex = load_splits(a)
    labels = T.Labels.from_examples(train_ex)
    enc_train = T.encode(train_ex, labels, S, proj)
    log.info("slots covering no token (cut by max_tokens=%d): %d", S, enc_train.n_uncovered_slots)
    labels.transitions = tagging.observed_transitions(
        (tags[:int(m.sum())] for tags, m in zip(enc_train.tags, enc_train.mask)), len(labels.tags))
    log.info("tag transitions seen in training: %d of %d", int(labels.transitions.sum()),
             labels.transitions.size)
    labels.intent_tags = tagging.intent_slot_tags(train_ex, labels.intents, labels.tags)
    labels.span_trims = tagging.SpanTrims.learn([e.text for e in train_ex], enc_train.offsets,
                                                [e.slots for e in train_ex])
    log.info("slot edges inside a token (span trims) learned from training: %d start, %d end",
             len(labels.span_trims.start), len(labels.span_trims.end))
    evals = {lang: (ex, T.encode(ex, labels, S, proj)) for lang, ex in splits["eval"].items()}
    tests = {lang: (ex, T.encode(ex, labels, S, proj)) for lang, ex in splits["test"].items()}
    return Prepared(splits, train_ex, labels, enc_train, evals, tests)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reuse_phase(model, ckpt_path: str, done_path: str, cb, model_name: str,
                 crf: bool) -> float:
    """Load a completed training phase (``--resume``): its best weights into ``model``, its
    eval history into the callback ``cb``; returns the phase's training seconds.

    Raises:
      ValueError: the checkpoint does not fit ``model``, or the phase was trained with the
        other ``--crf`` setting (names the file).
    """
    with open(done_path, encoding="utf-8") as f:
        done = json.load(f)
    # done files written before the CRF became the default lack the key and are not checked
    if done.get("crf", crf) != crf:
        was, flag = ("with", "--crf") if done["crf"] else ("without", "--no-crf")
        raise ValueError(f"{done_path}: this phase was trained {was} the slot CRF; resume it "
                         f"with {flag} or run again without --resume")
    try:
        model.load_weights(ckpt_path)
    except ValueError as e:  # e.g. written before QuantLayerNorm replaced LayerNormalization
        raise ValueError(f"{ckpt_path}: cannot resume from this checkpoint, it does not fit "
                         f"this version's {model_name} model ({' '.join(str(e).split())[:300]}); "
                         "run again without --resume") from None
    cb.history = done["history"]
    log.info("resumed: %s phase already complete (%d epochs), loaded %s",
             "QAT" if cb.tag == "qat" else cb.tag, len(cb.history), ckpt_path)
    return done["seconds"]


CHECKPOINT_PROJECTION = "projection.json"  # in OUT/checkpoints: the projection trained with
OLD_PROJECTION_FILE = "projection.json"  # in OUT, written beside --words runs before 2026-12-08


def read_projection_file(path: str):
    """The ``ProjectionConfig`` of a ``{"vector": [int, ...]}`` file (``build`` writes the
    config vector it trains with to ``OUT/checkpoints/projection.json``).

    Raises:
      OSError: the file cannot be read.
      ValueError: it is not a config vector (names the file).
    """
    from .projection_ref import ProjectionConfig

    try:
        with open(path, encoding="utf-8") as f:
            return ProjectionConfig.from_vector(json.load(f)["vector"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a projection config vector ({e})") from None


def _check_resume_projection(ckpt_dir: str, out: str, proj, resume: bool) -> None:
    """With ``--resume``, stop unless the checkpoint was trained with the same projection
    config as this run (the whole int32 config vector: method, F, N, window, S, seed,
    shape, n-grams and, with ``--words``, every word hash); then record this run's config
    as ``ckpt_dir/projection.json`` for the next ``--resume``.

    The saved config is read from ``ckpt_dir/projection.json``, else (a run written before
    that file existed) from ``out/projection.json``, which ``--words`` runs of that time
    have; a run with neither is resumed unchecked, with a warning.

    Raises:
      ValueError: the saved config differs (names the file and the fields that differ, e.g.
        the number of words) or cannot be read.
    """
    from . import train as T
    vec = [int(v) for v in proj.to_vector()]
    path = os.path.join(ckpt_dir, CHECKPOINT_PROJECTION)
    if resume:
        saved_path = next((p for p in (path, os.path.join(out, OLD_PROJECTION_FILE))
                           if os.path.exists(p)), None)
        if saved_path is None:
            log.warning("%s: no projection config beside the checkpoint (a run written "
                        "before it was kept): --resume cannot check it", ckpt_dir)
        else:
            try:
                saved = read_projection_file(saved_path)
            except OSError as e:
                raise ValueError(f"{saved_path}: unreadable ({e}); run again without "
                                 "--resume") from None
            except ValueError as e:
                raise ValueError(f"{e}; run again without --resume") from None
            if saved.to_vector().tolist() != vec:
                diff = [f"{k} {was} in the checkpoint, {now} in this run"
                        for k, was, now in proj.summary_differences(saved.summary())]
                raise ValueError(
                    f"{saved_path}: the checkpoint was trained with another projection ("
                    f"{'; '.join(diff) or 'other word hashes'}); resume with the same "
                    "--size/--words or run again without --resume")
    T.write_json_atomic(path, {"vector": vec})


def build(a: BuildArgs) -> dict:
    """Run the whole job; returns the metrics dict also written to metrics.json.

    Raises:
      FileNotFoundError / DataError: missing or malformed dataset files.
      ValueError: unknown model or size, no training examples, ``ema`` outside [0, 1),
        ``token_dropout`` outside [0, 1) or given for a model other than pnlp_mixer.
      warm_start.InitFromError (a ValueError): ``init_from`` names a run that is missing
        files or was built with another model, size or projection.
    """
    if not 0.0 <= a.ema < 1.0:  # before any data is read
        raise ValueError(f"--ema must be in [0, 1) (0: off), got {a.ema}")
    init_source = None
    if a.init_from:  # a missing or foreign run fails before any training
        from .warm_start import read_source
        init_source = read_source(a.init_from)
    import tensorflow as tf
    import tf_keras as keras

    from . import train as T
    from .export import evaluate_tflite, export
    from .tflite_model import TFLiteModel

    spec = model_spec(a.model)
    t_start = time.time()
    os.makedirs(os.path.join(a.out, "checkpoints"), exist_ok=True)
    random.seed(a.seed)
    np.random.seed(a.seed)
    tf.random.set_seed(a.seed)
    keras.utils.set_random_seed(a.seed)
    size_name = a.size or spec.default_size
    size = spec.get_size(size_name, a.max_tokens, a.dropout)
    if a.token_dropout is not None:
        if a.model != "pnlp_mixer":
            raise ValueError(f"--token-dropout is a pnlp_mixer setting, not {a.model}'s")
        if not 0.0 <= a.token_dropout < 1.0:
            raise ValueError(f"--token-dropout must be in [0, 1), got {a.token_dropout}")
        size = dataclasses.replace(size, net=dataclasses.replace(
            size.net, token_dropout=a.token_dropout))
    if a.words:
        size = dataclasses.replace(size, projection=with_word_list(size.projection, a.words))
    proj = size.projection
    S = proj.max_tokens
    _check_resume_projection(os.path.join(a.out, "checkpoints"), a.out, proj, a.resume)

    data = prepare_data(a, S, proj)
    splits, train_ex, labels = data.splits, data.train_ex, data.labels
    enc_train, evals, tests = data.enc_train, data.evals, data.tests
    log.info("train examples %d (%s); %d intents, %d BIO tags; S=%d F=%d window=%d",
             len(train_ex), ", ".join(f"{k}={len(v)}" for k, v in splits["train"].items()),
             len(labels.intents), len(labels.tags), S, proj.feature_size, size.window)
    if a.augment_slots:  # with --teacher, the teacher needs targets for the copies too
        from .augment import substitute_slot_values
        extra = substitute_slot_values(train_ex, a.augment_slots, a.seed)
        enc_train = T.concat_encoded(enc_train, T.encode(extra, labels, S, proj))
        log.info("slot-value substitution: %d extra training utterances (rate %g)", len(extra),
                 a.augment_slots)
    soft, losses, teacher = None, None, None
    if a.teacher:  # knowledge distillation: soft targets ride along with each example
        from . import distill
        # with --crf the CRFTagger computes the distillation loss itself (crf.py)
        losses = (None if a.crf else
                  distill.distill_losses(a.distill_temperature, a.distill_weight))
        teacher = distill.load_teacher(a.teacher)
        soft = distill.align_targets(teacher, enc_train.texts, enc_train.mask.sum(axis=1),
                                     labels.intents, labels.tags, S)
        log.info("distilling from %s (%s %s, %d examples): temperature %g, weight %g",
                 a.teacher, teacher.meta.get("model"), teacher.meta.get("size"),
                 teacher.meta["num_examples"], a.distill_temperature, a.distill_weight)

    def make(dynamic):
        return spec.build(size, num_intents=len(labels.intents), num_tags=len(labels.tags),
                          dynamic=dynamic)

    # Float training runs the dynamic-length model on length-bucketed batches cut to
    # their longest utterance; QAT and export use the static model (same weights).
    model, static = make(True), make(False)
    n_params = int(static.count_params())
    log.info("%s %s: %d parameters", a.model, size_name, n_params)
    from .crf import CRFTagger, unwrap
    if a.crf:  # the wrapper holds the CRF transitions and trains with the CRF loss
        allowed = labels.allowed_transitions()
        kd = (a.distill_temperature, a.distill_weight) if a.teacher else None
        model = CRFTagger(model, allowed, distill=kd)
        log.info("slot CRF: %d learned transition scores (the allowed ones) go into the "
                 "metadata", int(allowed.sum()))
    init_summary = None
    if init_source is not None:  # warm start: its float weights, matched label by label
        from .warm_start import init_from
        init_summary = init_from(init_source, spec, size, size_name, a.model, model, labels,
                                 a.crf)
    steps = T.steps_for(len(enc_train.texts), a.batch_size)
    train_ds = T.make_dataset(enc_train, proj, a.batch_size, shuffle=True, seed=a.seed,
                              cut_to_longest=True, bucket=True, soft=soft)
    verbose = T.keras_verbosity()
    ckpt = os.path.join(a.out, "checkpoints")
    if not a.resume:  # a fresh run must not pick up an older run's state
        for name in ("float.done.json", "float.weights.h5.state.json", "qat.done.json",
                     "qat.weights.h5.state.json"):
            if os.path.exists(os.path.join(ckpt, name)):
                os.remove(os.path.join(ckpt, name))
        for name in ("float_backup", "qat_backup"):
            shutil.rmtree(os.path.join(ckpt, name), ignore_errors=True)

    # 1. float training, early stopping on eval exact match; resumable per epoch
    T.compile_model(model, a.lr, steps * a.epochs, warmup_steps=min(steps, 200),
                    weight_decay=a.weight_decay, losses=losses, ema=a.ema)
    float_ckpt = os.path.join(ckpt, "float.weights.h5")
    float_done = os.path.join(ckpt, "float.done.json")
    cb = T.EvalExactMatch(evals, labels, proj, a.patience, float_ckpt, "float", resume=a.resume)
    float_resumed = a.resume and os.path.exists(float_done) and os.path.exists(float_ckpt)
    if float_resumed:
        float_s = _reuse_phase(model, float_ckpt, float_done, cb, a.model, a.crf)
    else:
        float_s = T.fit(model, train_ds, a.epochs, cb, verbose,
                        backup_dir=os.path.join(ckpt, "float_backup"))
        T.write_json_atomic(float_done, {"history": cb.history, "seconds": float_s,
                                         "crf": a.crf})
    keras_test = {lang: T.evaluate_keras(model, ex, enc, labels, proj)
                  for lang, (ex, enc) in tests.items()}
    spec.copy_weights(unwrap(model), static)

    # 2. quantization-aware training from the best float weights (static model, S tokens)
    qat = T.quantize_aware(spec.prepare_qat(static), annotate_all=spec.annotate_all,
                           custom_objects=spec.custom_objects)
    qat_train_ds = T.make_dataset(enc_train, proj, a.batch_size, shuffle=True, seed=a.seed,
                                  soft=soft)
    T.calibrate_quantization_ranges(qat, qat_train_ds, steps=min(steps, 50))
    if a.crf:  # QAT goes on training the float phase's transitions with the CRF loss
        qat = CRFTagger(qat, allowed, init=model.transition_scores(), distill=kd)
    T.compile_model(qat, a.qat_lr, steps * max(a.qat_epochs, 1), warmup_steps=0,
                    weight_decay=a.weight_decay, losses=losses)
    qat_ckpt = os.path.join(ckpt, "qat.weights.h5")
    qat_done = os.path.join(ckpt, "qat.done.json")
    qcb = T.EvalExactMatch(evals, labels, proj, a.patience, qat_ckpt, "qat", resume=a.resume)
    # a completed QAT phase is reused only on top of the float weights it started from
    if float_resumed and os.path.exists(qat_done) and os.path.exists(qat_ckpt):
        qat_s = _reuse_phase(qat, qat_ckpt, qat_done, qcb, a.model, a.crf)
    else:
        qat_s = T.fit(qat, qat_train_ds, a.qat_epochs, qcb, verbose,
                      backup_dir=os.path.join(ckpt, "qat_backup"))
        T.write_json_atomic(qat_done, {"history": qcb.history, "seconds": qat_s,
                                       "crf": a.crf})
    qat_test = {lang: T.evaluate_keras(qat, ex, enc, labels, proj)
                for lang, (ex, enc) in tests.items()}

    # 3. int8 export with the labels and settings inside the file
    rep = [e.text.encode("utf-8") for e in _subset(train_ex, a.representative_examples, a.seed)]
    if a.crf:
        labels.crf_transitions = qat.transition_scores()
    meta = {"model": a.model, "size": size_name, "dataset": a.dataset, "languages": a.languages,
            "projection": proj.summary(), "window": size.window,
            "labels": labels.to_json(), "parameters": n_params}
    t0 = time.time()
    model_path = os.path.join(a.out, "model.tflite")
    nbytes = export(unwrap(qat), proj, rep, meta, model_path, batch_size=spec.export_batch_size)
    export_s = time.time() - t0
    log.info("wrote %s (%d bytes)", model_path, nbytes)
    tfl = TFLiteModel(model_path)
    tflite_test = {lang: evaluate_tflite(tfl, ex) for lang, (ex, _) in tests.items()}

    metrics = {
        "keras": keras_test, "keras_qat": qat_test, "tflite": tflite_test,
        "model_size_bytes": nbytes, "parameters": n_params,
        "model": a.model, "size": size_name, "dataset": a.dataset, "languages": a.languages,
        "labels": {"intents": len(labels.intents), "tags": len(labels.tags)},
        "train_examples": len(train_ex), "augment_slots": a.augment_slots, "crf": a.crf,
        "ema": a.ema, "token_dropout": getattr(size.net, "token_dropout", 0.0),
        "init_from": init_summary,
        "augmented_examples": len(enc_train.texts) - len(train_ex),
        "epochs_run": {"float": len(cb.history), "qat": len(qcb.history)},
        "eval_history": {"float": cb.history, "qat": qcb.history},
        "seconds": {"float_training": round(float_s, 1), "qat": round(qat_s, 1),
                    "export": round(export_s, 1), "total": round(time.time() - t_start, 1)},
        "peak_rss_bytes": _peak_rss_bytes(),
    }
    for k in ("keras", "keras_qat", "tflite"):
        metrics[k]["average"] = _average(metrics[k])
    if teacher is not None:
        from .distill import percent_of_teacher
        t_test = teacher.meta.get("metrics", {}).get("test", {})
        same = all(t_test.get(lang, {}).get("n") == metrics["tflite"][lang]["n"]
                   for lang in a.languages)
        if not same:
            log.warning("the teacher's test sets differ from the student's (languages or "
                        "--max-eval-examples): percent_of_teacher compares different examples")
        metrics["distillation"] = {
            "teacher": os.path.abspath(a.teacher), "teacher_model": teacher.meta.get("model"),
            "teacher_size": teacher.meta.get("size"),
            "teacher_parameters": teacher.meta.get("parameters"),
            "temperature": a.distill_temperature, "weight": a.distill_weight,
            "teacher_test": t_test, "same_test_examples": same,
            "percent_of_teacher": {k: percent_of_teacher(metrics[k], t_test)
                                   for k in ("keras", "tflite")}}
    T.write_json_atomic(os.path.join(a.out, "metrics.json"), metrics)
    report = format_report(metrics)
    with open(os.path.join(a.out, "report.md"), "w", encoding="utf-8") as f:
        f.write(report)
    log.info("\n%s", report)
    return metrics


def _average(per_lang: dict) -> dict:
    keys = ("intent_accuracy", "slot_f1", "exact_match")
    langs = [v for k, v in per_lang.items() if k != "average"]
    out = {k: float(np.mean([v[k] for v in langs])) for k in keys}
    out["n"] = int(sum(v["n"] for v in langs))
    return out


def format_report(m: dict) -> str:
    """Markdown table of test metrics per language for Keras float, Keras QAT and TFLite."""
    lines = [f"# {m['model']} {m['size']} on {m['dataset']} "
             f"({m['parameters']:,} parameters, model.tflite {m['model_size_bytes']:,} bytes)", "",
             "| language | n | Keras EM | Keras intent acc | Keras slot F1 | QAT EM "
             "| TFLite EM | TFLite intent acc | TFLite slot F1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for lang in [*m["languages"], "average"]:
        k, q, t = m["keras"][lang], m["keras_qat"][lang], m["tflite"][lang]
        lines.append(f"| {lang} | {k['n']} | {100 * k['exact_match']:.1f} | "
                     f"{100 * k['intent_accuracy']:.1f} | {100 * k['slot_f1']:.1f} | "
                     f"{100 * q['exact_match']:.1f} | {100 * t['exact_match']:.1f} | "
                     f"{100 * t['intent_accuracy']:.1f} | {100 * t['slot_f1']:.1f} |")
    s = m["seconds"]
    lines += ["", f"Wall time {s['total']:.0f} s (float training {s['float_training']:.0f} s, "
              f"QAT {s['qat']:.0f} s, export {s['export']:.0f} s); peak RSS "
              f"{m['peak_rss_bytes'] / 2**20:.0f} MiB; epochs {m['epochs_run']}.", ""]
    d = m.get("distillation")
    if d:
        t = d["teacher_test"].get("average", {})
        p = d["percent_of_teacher"]["tflite"].get("average", {})

        def pct(k):
            return "n/a" if p.get(k) is None else f"{p[k]:.1f}%"
        lines += [f"Distilled from {d['teacher']} ({d['teacher_model']} {d['teacher_size']}, "
                  f"{d['teacher_parameters'] or 0:,} parameters; temperature "
                  f"{d['temperature']:g}, weight {d['weight']:g}). Teacher test EM "
                  f"{100 * t.get('exact_match', float('nan')):.1f}, intent acc "
                  f"{100 * t.get('intent_accuracy', float('nan')):.1f}, slot F1 "
                  f"{100 * t.get('slot_f1', float('nan')):.1f}; the TFLite student reaches "
                  f"{pct('exact_match')} of the teacher's EM, {pct('intent_accuracy')} of its "
                  f"intent accuracy, {pct('slot_f1')} of its slot F1.", ""]
    return "\n".join(lines)
