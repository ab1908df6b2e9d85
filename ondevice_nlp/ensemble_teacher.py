"""Ensemble teacher: finished ``build`` runs averaged into one teacher
(``ondevice-nlp teacher --teacher-model ensemble --members RUN[,RUN...]``).

Hinton, Vinyals and Dean 2015 ("Distilling the knowledge in a neural network",
arXiv 1503.02531, Sec. 1 and 3): the averaged predictions of an ensemble beat
any one member, and distillation moves much of that gain into a single small
model. On a 2-core machine the ~1 MB models trained anyway make a stronger
teacher this way than a 10 M-parameter model trained for a few epochs (README,
"Teacher and distillation").

A member is a ``build`` output folder: its ``model.tflite`` metadata gives the
model, size, projection and labels, ``checkpoints/float.weights.h5`` the float
weights of the best eval epoch (the float model, not the int8 one). Per example
the teacher's

* intent distribution is the mean of the members' softmax outputs;
* tag distribution of each token is the mean of the members' per-token tag
  distributions: the softmax of a plain model's slot logits, the marginals
  p(y_t = k | x) of a ``build --crf`` member's CRF (``crf.crf_log_marginals``).

The soft targets written (``distill.write_teacher``) are the logs of those means
(floored at 1e-12), so a softmax gives the means back. The teacher's own eval
and test metrics decode the means like a model's outputs (intent and valid tag
sequence chosen together, ``tagging.joint_decode``); so do the members' figures
listed in teacher.json, so the gain of the ensemble over its members is measured
with one decoder.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np

log = logging.getLogger(__name__)

FLOOR = 1e-12
"""Smallest probability whose log is stored (log 1e-12 = -27.6 fits float16)."""


@dataclasses.dataclass
class Member:
    """One loaded member: ``run`` its folder, ``meta`` its ``.tflite`` metadata,
    ``model`` the dynamic-length Keras model with its float weights (a
    ``crf.CRFTagger`` for a CRF run), ``proj`` its ``ProjectionConfig``,
    ``allowed`` bool [K + 1, K] its decoding constraints."""

    run: str
    meta: dict
    intents: list
    tags: list
    model: object
    proj: object
    allowed: np.ndarray
    crf: bool


def load_member(run: str) -> Member:
    """Rebuild a ``build`` run's float model from ``RUN/model.tflite`` and
    ``RUN/checkpoints/float.weights.h5``.

    The projection is the one the file's op runs with (``TFLiteModel.projection_config``:
    the whole config vector, a ``--words`` run's word hashes included), so the
    teacher cuts text into the same tokens as the member did in training.

    Raises:
      FileNotFoundError: a needed file is missing (names it).
      tflite_model.ModelFileError: a corrupt ``.tflite`` or metadata (including
        metadata and projection op that describe different projections).
      ValueError: the checkpoint does not fit the model the metadata describes.
    """
    from .crf import CRFTagger
    from .pipeline import model_spec
    from .tflite_model import TFLiteModel

    path = os.path.join(run, "model.tflite")
    weights = os.path.join(run, "checkpoints", "float.weights.h5")
    for p in (path, weights):
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p}: missing; an ensemble member must be a finished "
                                    "`ondevice-nlp build` output folder")
    tfl = TFLiteModel(path)
    meta = tfl.meta
    spec = model_spec(meta["model"])
    size = spec.get_size(meta["size"], meta["projection"]["max_tokens"], None)
    proj = tfl.projection_config()  # the op's own config: with --words, the word list too
    if proj is not None:
        size = dataclasses.replace(size, projection=proj)
    model = spec.build(size, num_intents=len(tfl.intents), num_tags=len(tfl.tags), dynamic=True)
    crf = tfl.crf_transitions is not None
    if crf:  # `build --crf` saved the CRF wrapper's weights (network and float transitions)
        model = CRFTagger(model, tfl.allowed)
    try:
        model.load_weights(weights)
    except ValueError as e:
        raise ValueError(f"{weights}: does not fit the {meta['model']} {meta['size']} model that "
                         f"{path} describes ({' '.join(str(e).split())[:300]})") from None
    return Member(run, meta, list(tfl.intents), list(tfl.tags), model, size.projection,
                  tfl.allowed, crf)


def member_distributions(member: Member, enc) -> tuple[np.ndarray, list]:
    """A member's intent and per-token tag distributions on encoded examples.

    Args:
      enc: ``train.Encoded`` with N examples (tokens counted by ``enc.mask``).
    Returns:
      (float64 [N, I] intent probabilities, N float64 arrays [n_i, K] of
      per-token tag probabilities), inference mode.
    """
    import tensorflow as tf

    from .crf import CRFTagger, crf_log_marginals
    from .tagging import log_softmax
    from .train import iter_logits

    n = len(enc.texts)
    lengths = enc.mask.sum(axis=1).astype(np.int64)
    intents = np.zeros((n, len(member.intents)), np.float64)
    slots = [None] * n
    trans = None
    if isinstance(member.model, CRFTagger):
        trans = member.model.crf_transitions + member.model.penalty
    net = member.model.tagger if trans is not None else member.model
    for rows, il, sl in iter_logits(net, enc, member.proj):
        intents[rows] = np.exp(log_softmax(il.astype(np.float64)))
        if trans is None:
            scores = log_softmax(sl.astype(np.float64))
        else:
            n_tok = lengths[rows]
            mask = (np.arange(sl.shape[1])[None, :] < n_tok[:, None]).astype(np.float32)
            scores = crf_log_marginals(tf.constant(sl), tf.constant(mask), trans,
                                       member.model.allowed).numpy()
        for j, r in enumerate(rows):
            slots[r] = np.exp(scores[j, :lengths[r]].astype(np.float64))
    return intents, slots


def decode_metrics(examples, enc, labels, intent_probs: np.ndarray, slot_probs: list) -> dict:
    """``metrics.evaluate`` of distributions decoded like a model's outputs.

    intent_probs float [N, I]; slot_probs N float arrays [n_i, K]; ``labels``
    a ``train.Labels`` (constraints and intent tags as in ``build``).
    """
    from .metrics import evaluate
    from .tagging import joint_decode
    from .train import decode_predictions

    S = enc.tags.shape[1]
    allowed = labels.allowed_transitions()
    ints = np.zeros((len(examples),), np.int64)
    tags = np.zeros((len(examples), S), np.int64)
    for i, (p, s) in enumerate(zip(intent_probs, slot_probs)):
        ints[i], tags[i, :len(s)] = joint_decode(p, np.log(np.maximum(s, FLOOR)), allowed,
                                                 labels.intent_tags)
    pi, ps = decode_predictions(enc, labels, ints, tags)
    return evaluate(list(examples), pi, ps)


def mean_distributions(parts) -> tuple[np.ndarray, list]:
    """The mean of (intent probabilities [N, I], N tag-probability arrays [n_i, K]) pairs
    (``member_distributions`` outputs), summed one pair at a time: given a generator,
    memory holds two members' outputs, not all of them."""
    it = iter(parts)
    intents, slots = next(it)
    n = 1
    for i2, s2 in it:
        intents = intents + i2
        slots = [a + b for a, b in zip(slots, s2)]
        n += 1
    return intents / n, [s / n for s in slots]


def load_members_and_data(a, members: list) -> tuple[list, object]:
    """Load ensemble members and the data they are scored on, checking they agree.

    Args:
      a: ``distill.TeacherArgs`` (dataset, data_dir, languages, the example caps).
      members: build output folders (at least one).
    Returns ([Member], ``pipeline.prepare_data(a, max_tokens)``'s data), the data
    encoded with the members' common ``max_tokens``.

    Raises:
      FileNotFoundError / tflite_model.ModelFileError: a member folder is
        incomplete or its ``.tflite`` corrupt (see ``load_member``).
      ValueError: no members; members whose max_tokens differ from each other,
        or whose labels (metadata field ``labels.intents`` / ``labels.tags``)
        differ from those of ``a``'s training data; the data's own errors.
    """
    from .pipeline import prepare_data

    if not members:
        raise ValueError("--teacher-model ensemble needs --members RUN[,RUN...]")
    loaded = [load_member(r) for r in members]
    first = loaded[0].proj
    S = first.max_tokens
    for m in loaded[1:]:
        if m.proj.max_tokens != S:
            raise ValueError(f"{m.run}/model.tflite: max_tokens {m.proj.max_tokens}, but "
                             f"{loaded[0].run} has {S}; ensemble members must cut utterances "
                             "alike")
        if (m.proj.words, m.proj.word_len) != (first.words, first.word_len):
            raise ValueError(f"{m.run}: its word list ({len(m.proj.words)} words) is not "
                             f"{loaded[0].run}'s ({len(first.words)}); ensemble members must "
                             "cut utterances into the same tokens")
    data = prepare_data(a, S, first)
    for m in loaded:
        for field, got, want in (("intents", m.intents, data.labels.intents),
                                 ("tags", m.tags, data.labels.tags)):
            if got != want:
                raise ValueError(
                    f"{m.run}/model.tflite: metadata field 'labels.{field}' ({len(got)}) differs "
                    f"from the {len(want)} {field} of the {a.dataset} "
                    f"{','.join(a.languages)} training data; ensemble members must be trained on "
                    "the teacher's --dataset and --languages")
    return loaded, data


def run_ensemble_teacher(a, members: list) -> dict:
    """Average finished build runs into a teacher folder ``a.out``.

    Args:
      a: ``distill.TeacherArgs`` (dataset, data_dir, languages, out, the
        example caps, seed; the training options are unused). With
        ``a.augment_slots`` the soft targets also cover the slot-substituted
        copies ``augment.substitute_slot_values(train, rate, seed)`` that
        ``build --augment-slots`` trains on (distilling on augmented text, as
        TinyBERT does: Jiao et al. 2020, arXiv 1909.10351).
      members: build output folders (at least one), trained on the same
        dataset and languages as ``a`` asks for (same labels, same max_tokens).
    Returns the teacher.json dict (also written with soft_targets.npz; ``model``
    is ``"ensemble"``, ``members`` lists each run with its own figures).

    Raises:
      FileNotFoundError / tflite_model.ModelFileError / ValueError: as
        ``load_members_and_data`` (missing or corrupt members, members whose
        labels or max_tokens disagree, no members, bad data).
    """
    from .distill import TARGETS_FILE, write_teacher
    from .pipeline import _average

    t0 = time.time()
    loaded, data = load_members_and_data(a, members)
    labels, S = data.labels, loaded[0].proj.max_tokens
    log.info("ensemble teacher: %d members (%s), %d training examples", len(loaded),
             ", ".join(f"{m.run}: {m.meta['model']} {m.meta['size']}{' crf' if m.crf else ''}"
                       for m in loaded), len(data.train_ex))

    metrics = {"eval": {}, "test": {}}
    member_metrics = [{"eval": {}, "test": {}} for _ in loaded]
    for name, split in (("eval", data.evals), ("test", data.tests)):
        for lang, (ex, enc) in split.items():
            parts = [member_distributions(m, enc) for m in loaded]
            for mm, p in zip(member_metrics, parts):
                mm[name][lang] = decode_metrics(ex, enc, labels, *p)
            metrics[name][lang] = decode_metrics(ex, enc, labels, *mean_distributions(parts))
        metrics[name]["average"] = _average(metrics[name])
        for mm in member_metrics:
            mm[name]["average"] = _average(mm[name])
    texts, enc = [e.text for e in data.train_ex], data.enc_train
    n_extra = 0
    if a.augment_slots:  # the copies `build --augment-slots` makes from the same examples and seed
        from .augment import substitute_slot_values
        from .train import concat_encoded, encode
        extra = substitute_slot_values(data.train_ex, a.augment_slots, a.seed)
        enc = concat_encoded(enc, encode(extra, labels, S, loaded[0].proj))
        texts += [e.text for e in extra]
        n_extra = len(extra)
        log.info("slot-value substitution: soft targets for %d extra utterances (rate %g, seed %d)",
                 n_extra, a.augment_slots, a.seed)
    intents, slots = mean_distributions(member_distributions(m, enc) for m in loaded)
    meta = {"model": "ensemble", "size": f"{len(loaded)} members",
            "parameters": int(sum(m.meta.get("parameters") or 0 for m in loaded)),
            "dataset": a.dataset, "languages": a.languages,
            "labels": {"intents": labels.intents, "tags": labels.tags}, "max_tokens": S,
            "members": [{"run": os.path.abspath(m.run), "model": m.meta["model"],
                         "size": m.meta["size"], "parameters": m.meta.get("parameters"),
                         "crf": m.crf, "metrics": mm}
                        for m, mm in zip(loaded, member_metrics)],
            "augment_slots": a.augment_slots, "augmented_examples": n_extra,
            "metrics": metrics, "seconds": {"total": round(time.time() - t0, 1)}}
    meta = write_teacher(a.out, meta, texts,
                         np.log(np.maximum(intents, FLOOR)),
                         [np.log(np.maximum(s, FLOOR)) for s in slots])
    avg = metrics["test"]["average"]
    log.info("ensemble teacher test: exact match %.4f, intent accuracy %.4f, slot F1 %.4f "
             "(members: %s); wrote %s", avg["exact_match"], avg["intent_accuracy"],
             avg["slot_f1"], ", ".join(f"{mm['test']['average']['exact_match']:.4f}"
                                       for mm in member_metrics),
             os.path.join(a.out, TARGETS_FILE))
    return meta
