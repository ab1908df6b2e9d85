"""Training, quantization-aware training and evaluation of the Keras model.

Data flow: ``Example`` (text, char-span slots) -> UTF-8 bytes + BIO tag ids on
the projection's tokens (``encode``) -> ``tf.data`` that runs the custom
projection op per batch -> Keras model. Evaluation decodes BIO tags back to
character spans and scores them with ``ondevice_nlp.metrics.evaluate``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as _default8bit)

from . import ops, tagging
from .data.example import Example
from .metrics import evaluate
from .projection_ref import ProjectionConfig, tokenize

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Labels:
    """Label vocabularies: intents and BIO slot tags (index 0 is "O").

    ``transitions``: optional bool [K + 1, K] of tag transitions seen in the
    training data (``tagging.observed_transitions``); decoding then allows only
    those (and IOB2-valid) transitions. ``intent_tags``: optional bool [I, K], the
    tags each intent may use (``tagging.intent_slot_tags`` of the training
    set); decoding then chooses intent and tags jointly (``tagging.joint_decode``).
    ``span_trims``: optional ``tagging.SpanTrims`` learned from the training set;
    decoded slots then may start or end inside a token (MTOP Spanish clitics).
    ``crf_transitions``: optional float [K + 1, K], a linear-chain CRF's learned
    transition scores (``ondevice_nlp.crf``, ``build --crf``); decoding then adds
    them to each tag sequence's score.
    """

    intents: list[str]
    tags: list[str]
    transitions: np.ndarray | None = None
    intent_tags: np.ndarray | None = None
    span_trims: tagging.SpanTrims | None = None
    crf_transitions: np.ndarray | None = None

    @classmethod
    def from_examples(cls, examples: Sequence[Example]) -> "Labels":
        """Vocabularies from the training examples (sorted, deterministic)."""
        intents = sorted({e.intent for e in examples})
        slot_types = sorted({s.type for e in examples for s in e.slots})
        return cls(intents, tagging.bio_labels(slot_types))

    def to_json(self) -> dict:
        out = {"intents": self.intents, "tags": self.tags}
        if self.transitions is not None:
            out["transitions"] = tagging.pack_transitions(self.transitions)
        if self.intent_tags is not None:
            out["intent_tags"] = tagging.pack_bits(self.intent_tags)
        if self.span_trims is not None:
            out["span_trims"] = self.span_trims.to_json()
        if self.crf_transitions is not None:
            out["crf_transitions"] = tagging.pack_transition_scores(
                self.crf_transitions, self.allowed_transitions())
        return out

    def allowed_transitions(self) -> np.ndarray:
        """bool [K + 1, K]: IOB2 rules (``tagging.bio_allowed_transitions``), and with
        ``transitions`` set, only the transitions seen in training."""
        return tagging.bio_allowed_transitions(self.tags, self.transitions)


@dataclasses.dataclass
class Encoded:
    """Arrays for a list of examples.

    texts: object [N] of UTF-8 bytes; intents: int32 [N] (-1 unseen label);
    tags: int32 [N, S] BIO tag ids on the projection's tokens (0 = O, also padding);
    mask: float32 [N, S] 1.0 for real tokens; offsets: per example, the character
    (start, end) of its tokens (first S), for decoding predicted tags back to spans.
    """

    texts: np.ndarray
    intents: np.ndarray
    tags: np.ndarray
    mask: np.ndarray
    n_uncovered_slots: int
    offsets: list


def token_char_offsets(text: str, max_tokens: int, proj=None) -> list[tuple[int, int]]:
    """Character (start, end) of the projection's tokens of ``text`` (first S).

    ``proj``: the ``ProjectionConfig`` whose word dictionary (if any) joins
    letters into words (``projection_ref.tokenize``); None for none.
    """
    words, word_len = (proj.word_set, proj.word_len) if proj is not None else (frozenset(), 0)
    byte_offsets = [(s, e) for s, e, _ in tokenize(text.encode("utf-8"), max_tokens, words,
                                                   word_len)]
    return tagging.byte_to_char_offsets(text, byte_offsets)


def encode(examples: Sequence[Example], labels: Labels, max_tokens: int,
           proj=None) -> Encoded:
    """Turn examples into training arrays (see ``Encoded``), tokenized as ``proj`` does
    (``token_char_offsets``)."""
    n, S = len(examples), max_tokens
    intent_id = {x: i for i, x in enumerate(labels.intents)}
    tag_id = {x: i for i, x in enumerate(labels.tags)}
    texts = np.empty((n,), dtype=object)
    intents = np.full((n,), -1, dtype=np.int32)
    tags = np.zeros((n, S), dtype=np.int32)
    mask = np.zeros((n, S), dtype=np.float32)
    uncovered = 0
    all_offsets = []
    for i, ex in enumerate(examples):
        texts[i] = ex.text.encode("utf-8")
        intents[i] = intent_id.get(ex.intent, -1)
        offs = token_char_offsets(ex.text, S, proj)
        all_offsets.append(offs)
        bio, miss = tagging.spans_to_bio(offs, ex.slots)
        uncovered += miss
        tags[i, :len(bio)] = [tag_id.get(t, 0) for t in bio]
        mask[i, :len(offs)] = 1.0
    return Encoded(texts, intents, tags, mask, uncovered, all_offsets)


def concat_encoded(a: Encoded, b: Encoded) -> Encoded:
    """``a``'s examples followed by ``b``'s (same S)."""
    return Encoded(np.concatenate([a.texts, b.texts]), np.concatenate([a.intents, b.intents]),
                   np.concatenate([a.tags, b.tags]), np.concatenate([a.mask, b.mask]),
                   a.n_uncovered_slots + b.n_uncovered_slots, [*a.offsets, *b.offsets])


def _bucket_boundaries(lengths: np.ndarray, n_buckets: int = 8) -> list[int]:
    """Token-count bucket boundaries at the deciles of ``lengths`` (similar-size buckets)."""
    qs = np.quantile(lengths, np.linspace(0, 1, n_buckets + 1)[1:-1]) if len(lengths) else []
    return sorted({int(q) + 1 for q in qs if int(q) + 1 > 1})


def make_dataset(enc: Encoded, proj: ProjectionConfig, batch_size: int, *, shuffle: bool,
                 seed: int = 0, with_labels: bool = True, cut_to_longest: bool = False,
                 bucket: bool = False, soft=None) -> tf.data.Dataset:
    """tf.data of ({features [B,L,F], mask [B,L]}, (intent [B], tags [B,L]), (weights)).

    The projection runs in the pipeline through the custom TF op. Examples
    whose intent is unseen in training get intent weight 0. L = S unless
    ``cut_to_longest``: then the op projects only the first L tokens, L being
    the longest utterance of the batch (for the dynamic-length model, see
    ``models/pnlp_mixer.py``). ``bucket`` batches utterances of similar token
    counts together (``tf.data.Dataset.bucket_by_sequence_length`` over
    decile boundaries), so that L is close to every utterance's length.

    ``soft`` (``distill.StudentTargets``, aligned row for row with ``enc``):
    the teacher's logits travel with each example through shuffling and
    bucketing, and the targets become ``(intent [B, 1 + I], tags [B, L, 1 + K])``
    float32: column 0 the hard label id, the rest the teacher's logits (zero on
    padding), for ``distill.DistillLoss``.
    """
    cfg_vec = tf.constant(proj.to_vector())
    texts = tf.constant(list(enc.texts), dtype=tf.string) if len(enc.texts) else \
        tf.zeros((0,), tf.string)
    lengths = enc.mask.sum(axis=1).astype(np.int32)
    extra = () if soft is None else (soft.intent_logits, tf.RaggedTensor.from_row_lengths(
        soft.slot_logits, soft.slot_lengths.astype(np.int64)))
    ds = tf.data.Dataset.from_tensor_slices(
        (texts, np.maximum(enc.intents, 0), enc.tags, (enc.intents >= 0).astype(np.float32),
         *extra, lengths))
    if shuffle:
        ds = ds.shuffle(len(enc.texts), seed=seed, reshuffle_each_iteration=True)
    bounds = _bucket_boundaries(lengths) if bucket else []
    if bounds:
        ds = ds.bucket_by_sequence_length(
            lambda *e: e[-1], bounds, [batch_size] * (len(bounds) + 1), no_padding=True)
    else:
        ds = ds.batch(batch_size)

    def project(t, intent, tags, iw, *rest):
        n = rest[-1]
        cfg = cfg_vec
        if cut_to_longest:
            longest = tf.maximum(tf.reduce_max(n), 1)
            cfg = tf.concat([cfg_vec[:5], longest[None], cfg_vec[6:]], axis=0)  # [5] is S
            tags = tags[:, :longest]
        feats, mask, _ = ops.projection(t, cfg)
        x = {"features": feats, "mask": mask}
        if not with_labels:
            return x
        # Slot weights: the mask scaled so the loss is a mean over real tokens of the
        # batch, not over all B*L positions (padding would dilute slot gradients).
        sw = mask * (tf.cast(tf.size(mask), tf.float32) / tf.maximum(tf.reduce_sum(mask), 1.0))
        if soft is not None:  # hard label id in column 0, then the teacher's logits
            t_int, t_slot = rest[0], rest[1]
            t_slot = tf.cast(t_slot.to_tensor(), tf.float32)  # [B, longest row, K]
            t_slot = tf.pad(t_slot, [[0, 0], [0, tf.shape(tags)[1] - tf.shape(t_slot)[1]], [0, 0]])
            intent = tf.concat([tf.cast(intent, tf.float32)[:, None], t_int], axis=1)
            tags = tf.concat([tf.cast(tags, tf.float32)[:, :, None], t_slot], axis=2)
        # positional targets: QAT renames the outputs (quant_intent, quant_slots)
        return x, (intent, tags), (iw, sw)

    # A sequential map (the op takes ~20 ms per 128 utterances, overlapped with training by
    # prefetch) and no autotuning: with a parallel map, TF 2.21 hung for good destroying an
    # iterator after epoch 9 of an MTOP run (main thread in ~RootDataset::Iterator waiting
    # for the ParallelMap runner thread).
    opts = tf.data.Options()
    opts.autotune.enabled = False
    return ds.map(project).prefetch(2).with_options(opts)


def is_dynamic(model: keras.Model) -> bool:
    """True for a dynamic-length model (sequence axis None)."""
    return model.inputs[0].shape[1] is None


def _take(enc: Encoded, order: np.ndarray) -> Encoded:
    return Encoded(enc.texts[order], enc.intents[order], enc.tags[order], enc.mask[order],
                   enc.n_uncovered_slots, [enc.offsets[i] for i in order])


def decode_predictions(enc: Encoded, labels: Labels, intent_ids: np.ndarray,
                       tag_ids: np.ndarray):
    """Predicted (intents, slot span lists) from intent ids [N] and tag ids [N, S];
    with ``labels.span_trims``, slot edges move inside tokens as it says."""
    intents, slots = [], []
    for text, offs, i, tg in zip(enc.texts, enc.offsets, intent_ids, tag_ids):
        intents.append(labels.intents[int(i)])
        spans = tagging.bio_to_spans(offs, [labels.tags[int(t)] for t in tg[:len(offs)]])
        if labels.span_trims:
            spans = labels.span_trims.apply(text.decode("utf-8"), offs, spans)
        slots.append(spans)
    return intents, slots


def keras_predict(model: keras.Model, enc: Encoded, proj: ProjectionConfig, batch_size: int = 256,
                  allowed: np.ndarray | None = None, intent_tags: np.ndarray | None = None,
                  transition_scores: np.ndarray | None = None):
    """Run the Keras model; returns intent ids [N] and tag ids [N, S] (int64).

    Intents are the argmax and tags the per-token argmax, or with ``allowed``
    (bool [K + 1, K], see ``Labels.allowed_transitions``) the best valid IOB2
    sequence over each utterance's tokens (``tagging.viterbi_bio``), and with
    ``intent_tags`` too (bool [I, K], ``Labels.intent_tags``) the best intent
    and tag sequence chosen together (``tagging.joint_decode``), as
    ``TFLiteModel`` decodes. A dynamic-length model sees the utterances sorted
    by token count, in batches cut to their longest utterance; results come
    back in the input order. ``transition_scores`` (float [K + 1, K], with
    ``allowed``): a CRF's transitions, added to the path scores
    (``ondevice_nlp.crf``); ``model`` may be a ``crf.CRFTagger``.
    """
    from .crf import unwrap
    model = unwrap(model)
    S, n = proj.max_tokens, len(enc.texts)
    ints = np.zeros((n,), np.int64)
    tags = np.zeros((n, S), np.int64)
    for rows, il, scores in iter_logits(model, enc, proj, batch_size):
        ints[rows] = np.argmax(il, -1)
        if allowed is not None and intent_tags is not None:
            probs = np.exp(tagging.log_softmax(il))
        for j, row in enumerate(rows):
            if allowed is None:
                tags[row, :scores.shape[1]] = np.argmax(scores[j], -1)
                continue
            n_tok = len(enc.offsets[row])
            if intent_tags is None:
                tags[row, :n_tok] = tagging.viterbi_bio(scores[j, :n_tok], allowed,
                                                        transition_scores)
            else:
                ints[row], tags[row, :n_tok] = tagging.joint_decode(
                    probs[j], scores[j, :n_tok], allowed, intent_tags,
                    transition_scores=transition_scores)
    return ints, tags


def iter_logits(model: keras.Model, enc: Encoded, proj: ProjectionConfig, batch_size: int = 256):
    """Run the Keras model over ``enc`` in batches (inference mode).

    Yields (rows int64 [B] indices into ``enc``, intent logits float32 [B, I],
    slot logits float32 [B, L, K]); L = S for a static model, the batch's
    longest utterance for a dynamic-length one (which sees the utterances
    sorted by token count). Every row is yielded exactly once.
    """
    n = len(enc.texts)
    dynamic = is_dynamic(model)
    order = np.argsort(enc.mask.sum(axis=1), kind="stable") if dynamic else np.arange(n)
    ds = make_dataset(_take(enc, order), proj, batch_size, shuffle=False, with_labels=False,
                      cut_to_longest=dynamic)
    i = 0
    for x in ds:
        il, sl = model(x, training=False)
        k = il.shape[0]
        yield order[i:i + k], il.numpy(), sl.numpy()
        i += k


def evaluate_keras(model, examples: Sequence[Example], enc: Encoded, labels: Labels,
                   proj: ProjectionConfig) -> dict:
    """Intent accuracy, slot F1, exact match of the Keras model on examples.

    Intent and slots come from joint, constrained IOB2 Viterbi decoding of the
    logits (``keras_predict``), as for the exported ``.tflite``
    (``TFLiteModel.decode_batch``). For a ``crf.CRFTagger`` the decoder adds
    its current transitions, otherwise ``labels.crf_transitions`` if set.
    """
    from .crf import CRFTagger
    trans = model.transition_scores() if isinstance(model, CRFTagger) else labels.crf_transitions
    ii, tt = keras_predict(model, enc, proj, allowed=labels.allowed_transitions(),
                           intent_tags=labels.intent_tags, transition_scores=trans)
    pi, ps = decode_predictions(enc, labels, ii, tt)
    return evaluate(list(examples), pi, ps)


class EvalExactMatch(keras.callbacks.Callback):
    """Early stopping on mean eval exact match over languages, keeping the best weights.

    After each epoch: scores each language's eval split, logs the figures,
    saves the best weights to ``ckpt_path`` (write then rename) and its own
    state (best score, epochs without gain, history) to ``ckpt_path +
    ".state.json"``, stops after ``patience`` epochs without improvement and
    restores the best weights at the end. With ``resume``, the state saved by an
    interrupted run is read back at the start of training (the weights and
    optimizer come back through ``keras.callbacks.BackupAndRestore``).

    With an optimizer that keeps a moving average of the weights (``compile_model(ema=)``),
    each epoch scores the averaged weights (swapped in, then the raw ones back for training),
    and those are what is saved and restored.
    """

    def __init__(self, evals: dict, labels: Labels, proj: ProjectionConfig, patience: int,
                 ckpt_path: str | None, tag: str, resume: bool = False):
        super().__init__()
        self.evals, self.labels, self.proj = evals, labels, proj
        self.patience, self.ckpt_path, self.tag = patience, ckpt_path, tag
        self.best, self.best_weights, self.wait, self.history = -1.0, None, 0, []
        self.state_path = ckpt_path + ".state.json" if ckpt_path else None
        if resume and self.state_path and os.path.exists(self.state_path):
            with open(self.state_path, encoding="utf-8") as f:
                st = json.load(f)
            self.best, self.wait, self.history = st["best"], st["wait"], st["history"]
            log.info("[%s] resumed after epoch %d (best eval exact match %.4f)", tag,
                     len(self.history), self.best)

    def on_epoch_end(self, epoch, logs=None):
        opt = getattr(self.model, "optimizer", None)
        raw = None
        if getattr(opt, "use_ema", False):  # score (and keep) the moving average
            raw = [v.numpy() for v in self.model.trainable_variables]
            opt.finalize_variable_values(self.model.trainable_variables)
        try:
            self._score_epoch(epoch, logs)
        finally:
            if raw is not None:
                for v, w in zip(self.model.trainable_variables, raw):
                    v.assign(w)

    def _score_epoch(self, epoch, logs):
        per = {lang: evaluate_keras(self.model, ex, enc, self.labels, self.proj)
               for lang, (ex, enc) in self.evals.items()}
        em = float(np.mean([m["exact_match"] for m in per.values()]))
        self.history = [h for h in self.history if h["epoch"] < epoch + 1]
        self.history.append({"epoch": epoch + 1, "eval_exact_match": em,
                             "loss": float((logs or {}).get("loss", float("nan")))})
        detail = " ".join(f"{k}={v['exact_match']:.4f}" for k, v in per.items())
        log.info("[%s] epoch %d eval exact match %.4f (%s)", self.tag, epoch + 1, em, detail)
        if em > self.best:
            self.best, self.wait = em, 0
            self.best_weights = self.model.get_weights()
            if self.ckpt_path:
                tmp = self.ckpt_path + ".tmp.weights.h5"
                self.model.save_weights(tmp)
                os.replace(tmp, self.ckpt_path)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                log.info("[%s] early stopping: no gain for %d epochs", self.tag, self.patience)
                self.model.stop_training = True
        if self.state_path:
            write_json_atomic(self.state_path, {"best": self.best, "wait": self.wait,
                                                "history": self.history})

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        elif self.ckpt_path and os.path.exists(self.ckpt_path):  # resumed: best is on disk
            self.model.load_weights(self.ckpt_path)


class KillAfterEpoch(keras.callbacks.Callback):
    """Fault injection for tests: SIGKILL this process at the end of epoch ``n`` (1-based).

    Enabled by ``ONDEVICE_NLP_KILL_AFTER=TAG:N`` (for example ``float:2``); runs
    after the checkpoint callbacks, as a kill between epochs would.
    """

    def __init__(self, tag: str):
        super().__init__()
        want = os.environ.get("ONDEVICE_NLP_KILL_AFTER", "")
        self.n = int(want.split(":")[1]) if want.startswith(tag + ":") else None

    def on_epoch_end(self, epoch, logs=None):
        if self.n is not None and epoch + 1 == self.n:
            import signal
            os.kill(os.getpid(), signal.SIGKILL)


def compile_model(model: keras.Model, lr: float, total_steps: int, warmup_steps: int,
                  weight_decay: float = 0.01, losses: list | None = None, ema: float = 0.0):
    """AdamW (decoupled weight decay) with linear warm-up then cosine decay.

    Losses: ``losses`` (intent, slots), e.g. ``distill.distill_losses``, or
    sparse cross-entropy on both heads. ``ema`` in (0, 1): the optimizer also keeps an
    exponential moving average of the trainable weights, ``avg = ema * avg + (1 - ema) * w``
    after every step (Polyak and Juditsky 1992; tf_keras ``use_ema``), which
    ``EvalExactMatch`` scores and keeps instead of the raw weights.

    Raises:
      ValueError: ``ema`` outside [0, 1).
    """
    if not 0.0 <= ema < 1.0:
        raise ValueError(f"ema must be in [0, 1) (0: off), got {ema}")
    sched = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr / 10 if warmup_steps else lr,
        decay_steps=max(1, total_steps - warmup_steps), alpha=0.02,
        warmup_target=lr if warmup_steps else None, warmup_steps=warmup_steps)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt = keras.optimizers.AdamW(sched, weight_decay=weight_decay, use_ema=ema > 0,
                                 ema_momentum=ema if ema > 0 else 0.99)
    model.compile(optimizer=opt, loss=losses or [ce, ce])


def fit(model, train_ds, epochs, callback: EvalExactMatch, verbose, backup_dir: str | None = None):
    """model.fit with the eval callback; returns wall seconds.

    With ``backup_dir``, ``keras.callbacks.BackupAndRestore`` saves weights,
    optimizer state and the epoch counter there after every epoch, and a
    restarted run continues from the last completed epoch (the folder is
    deleted when training ends).
    """
    t0 = time.time()
    if epochs > 0:
        cbs = [callback]
        if backup_dir:
            cbs.append(keras.callbacks.BackupAndRestore(backup_dir))
        cbs.append(KillAfterEpoch(callback.tag))
        model.fit(train_ds, epochs=epochs, callbacks=cbs, verbose=verbose)
    return time.time() - t0


class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """tfmot QuantizeConfig that fake-quantizes only a layer's output (8 bit, EMA range)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


class _NamedMovingAverageQuantizer(tfmot.quantization.keras.quantizers.MovingAverageQuantizer):
    """tfmot's 8-bit EMA-range quantizer with its min/max variables named ``prefix_*``,
    so that one layer can hold several of them."""

    def __init__(self, prefix: str):
        super().__init__(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)
        self.prefix = prefix

    def build(self, tensor_shape, name, layer):
        return super().build(tensor_shape, f"{self.prefix}_{name}", layer)

    def get_config(self):
        return {"prefix": self.prefix}


class LayerNormQuantizeConfig(OutputQuantizeConfig):
    """QuantizeConfig for ``models.pnlp_mixer.QuantLayerNorm``: fake-quantizes the
    output (as ``OutputQuantizeConfig``) and also the layer's hooks on the centred
    values, their squares, the variance and 1/std (8 bit, EMA ranges), which the
    int8 ``.tflite`` computes as int8 tensors (see ``QuantLayerNorm``)."""

    def get_activations_and_quantizers(self, layer):
        return [(getattr(layer, f"{h}_activation"), _NamedMovingAverageQuantizer(f"ln_{h}"))
                for h in layer.QUANT_HOOKS]

    def set_quantize_activations(self, layer, quantize_activations):
        for h, act in zip(layer.QUANT_HOOKS, quantize_activations):
            setattr(layer, f"{h}_activation", act)


def annotate_layers(model: keras.Model, kinds: tuple) -> keras.Model:
    """Copy of ``model`` (same weights) whose layers of the classes ``kinds`` are
    wrapped in tfmot's ``QuantizeAnnotate`` with tfmot's default 8-bit rules;
    for ``quantize_aware(..., annotate_all=False)``.

    Raises:
      ValueError: ``kinds`` is empty (nothing would be quantization-aware).
    """
    if not kinds:
        raise ValueError("give at least one layer class to annotate")
    qk = tfmot.quantization.keras

    def clone_fn(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        return qk.quantize_annotate_layer(fresh) if isinstance(layer, kinds) else fresh

    out = keras.models.clone_model(model, clone_function=clone_fn)
    out.set_weights(model.get_weights())
    return out


def quantize_aware(model: keras.Model, annotate_all: bool = True,
                   custom_objects: dict | None = None) -> keras.Model:
    """Wrap a float model for QAT with tfmot's default 8-bit scheme.

    Dense/Conv1D weights get 8-bit fake quantization and layer outputs
    EMA-ranged fake quantization (tensorflow-model-optimization,
    ``quantize_apply``). Layers tfmot has no rule for (LayerNormalization, Dot,
    Rescaling, Multiply) get ``OutputQuantizeConfig``: only their output is fake-quantized;
    Conv1D (the bottleneck) gets tfmot's own Dense-style config (8-bit kernel,
    quantized activation output). Returns a new model holding the float model's weights.

    With ``annotate_all=False`` the model's own annotations (``annotate_layers``)
    are applied as they are and no other layer is annotated; ``custom_objects``
    names the model's own layer classes for tfmot's clone of it.
    """
    qk = tfmot.quantization.keras
    annotate = (keras.layers.LayerNormalization, keras.layers.Dot, keras.layers.Rescaling,
                keras.layers.Multiply)

    def clone_fn(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        if hasattr(layer, "QUANT_HOOKS"):  # models.pnlp_mixer.QuantLayerNorm
            return qk.quantize_annotate_layer(fresh, LayerNormQuantizeConfig())
        if isinstance(layer, annotate):
            return qk.quantize_annotate_layer(fresh, OutputQuantizeConfig())
        if isinstance(layer, keras.layers.Conv1D):
            return qk.quantize_annotate_layer(
                fresh, _default8bit.Default8BitQuantizeConfig(["kernel"], ["activation"], False))
        return fresh

    scope = {"OutputQuantizeConfig": OutputQuantizeConfig,
             "LayerNormQuantizeConfig": LayerNormQuantizeConfig,
             "Default8BitQuantizeConfig": _default8bit.Default8BitQuantizeConfig,
             **(custom_objects or {})}
    if not annotate_all:
        with qk.quantize_scope(scope):
            return qk.quantize_apply(model)
    annotated = keras.models.clone_model(model, clone_function=clone_fn)
    annotated.set_weights(model.get_weights())
    with qk.quantize_scope(scope):
        return qk.quantize_apply(qk.quantize_annotate_model(annotated))


def calibrate_quantization_ranges(qat_model: keras.Model, dataset: tf.data.Dataset,
                                  steps: int = 50, ema_decay: float = 0.9) -> None:
    """Set the QAT model's activation ranges from data before QAT training starts.

    tfmot's ``MovingAverageQuantizer`` starts every activation range at
    [-6, 6] and follows batch min/max with a fixed EMA decay of 0.999, so over
    a few hundred QAT steps the ranges barely move and clip the activations
    (MTOP en: eval exact match 0.0 straight after ``quantize_apply``, 0.40 after
    one QAT epoch, against 0.68 for the float model). This runs ``steps``
    training-mode forward passes (no weight update) traced with a fast decay,
    so the ranges converge to the data's (0.64 on the same check); the QAT fit
    that follows is traced afresh with tfmot's own 0.999. The decay is changed
    by swapping ``quant_ops.MovingAvgQuantize`` while this function traces.
    """
    from tensorflow_model_optimization.python.core.quantization.keras import quantizers

    original = quantizers.quant_ops.MovingAvgQuantize

    def fast(*args, **kwargs):
        kwargs["ema_decay"] = ema_decay
        return original(*args, **kwargs)

    @tf.function
    def forward(x):
        qat_model(x, training=True)

    quantizers.quant_ops.MovingAvgQuantize = fast
    try:
        for batch in dataset.take(steps):
            forward(batch[0])
    finally:
        quantizers.quant_ops.MovingAvgQuantize = original


def keras_verbosity() -> int:
    """Keras progress bar on a terminal, one line per epoch otherwise (CI logs)."""
    return 1 if sys.stdout.isatty() else 2


def write_json_atomic(path: str, obj) -> None:
    """Write JSON to ``path`` through a temporary file and rename."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def steps_for(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))
