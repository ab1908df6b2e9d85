"""Warm start (``ondevice-nlp build --init-from RUN``): begin float training from
the best float weights of an earlier ``build`` of the same model and size,
for example a language's model from the six-language model's weights.

The two runs' label sets may differ (one language's intents and slot tags are
usually a subset of six languages'). Layers that do not depend on the labels
are copied as they are; the output heads (``LABEL_LAYERS``: the last axis of
each weight is one row per label) and the CRF transition scores (float32
[K + 1, K], row K the start; ``crf.CRFTagger``) are copied label by label,
matched by name; a label the earlier run did not have keeps its fresh
initial weights. This is ordinary fine-tuning of a pretrained multilingual
model (e.g. Conneau et al. 2020 fine-tune XLM-R per language); nothing here
is specific to a paper.

What is read from RUN: ``model.tflite`` (its metadata: model, size,
projection and label names) and ``checkpoints/float.weights.h5`` (the float
phase's best weights, as ``build`` writes them).
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from .models import copy_by_name

log = logging.getLogger(__name__)

# Output layers whose weights have one entry per label on their last axis.
LABEL_LAYERS = {"intent": "intents", "slots": "tags", "slots_from_intent": "tags"}


class InitFromError(ValueError):
    """``--init-from`` names a run that cannot start this one (message names the file)."""


@dataclasses.dataclass(frozen=True)
class InitSource:
    """What ``--init-from RUN`` provides: the earlier run's settings and checkpoint.

    ``intents`` / ``tags``: its label names in its head order; ``crf``: its
    float checkpoint holds CRF transition scores; ``checkpoint``: path of
    ``checkpoints/float.weights.h5``; ``projection_vector``: the config vector of
    its projection op (``tflite_model.read_projection_vector``; with ``--words``
    it holds the word hashes, which ``projection``, the metadata, does not), None
    for a file without the op.
    """

    run: str
    model: str
    size: str
    projection: dict
    intents: list
    tags: list
    crf: bool
    checkpoint: str
    projection_vector: tuple | None = None


def read_source(run: str) -> InitSource:
    """Read RUN's ``model.tflite`` metadata and locate its float checkpoint.

    Raises:
        InitFromError: RUN has no ``model.tflite`` or no
            ``checkpoints/float.weights.h5``, or the file is not a model of this
            package or lacks label lists (the message names the file).
    """
    from .tflite_model import ModelFileError, read_metadata, read_projection_vector

    path = os.path.join(run, "model.tflite")
    ckpt = os.path.join(run, "checkpoints", "float.weights.h5")
    for p, what in ((path, "the model"), (ckpt, "the best float weights")):
        if not os.path.isfile(p):
            raise InitFromError(f"--init-from {run}: {p} ({what} of an `ondevice-nlp build` "
                                "run) does not exist")
    with open(path, "rb") as f:
        buf = f.read()
    try:
        meta = read_metadata(buf, path)
        vec = read_projection_vector(buf, path)
    except ModelFileError as e:
        raise InitFromError(f"--init-from {run}: {e}") from None
    labels = meta.get("labels") or {}
    if not isinstance(labels.get("intents"), list) or not isinstance(labels.get("tags"), list):
        raise InitFromError(f"--init-from {run}: {path} has no label lists in its metadata")
    return InitSource(run=run, model=meta.get("model", "?"), size=meta.get("size", "?"),
                      projection=meta.get("projection", {}), intents=list(labels["intents"]),
                      tags=list(labels["tags"]), crf="crf_transitions" in labels,
                      checkpoint=ckpt,
                      projection_vector=None if vec is None else tuple(int(v) for v in vec))


def label_map(src: list, dst: list) -> np.ndarray:
    """int64 [len(dst)]: for each label of ``dst``, its index in ``src``, -1 if absent."""
    where = {name: i for i, name in enumerate(src)}
    return np.array([where.get(name, -1) for name in dst], dtype=np.int64)


def _remap_last_axis(src_w: np.ndarray, dst_w: np.ndarray, index: np.ndarray) -> np.ndarray:
    out = dst_w.copy()
    have = index >= 0
    out[..., have] = src_w[..., index[have]]
    return out


def remap_transitions(src: np.ndarray, dst: np.ndarray, tag_index: np.ndarray) -> np.ndarray:
    """CRF transition scores [Ks + 1, Ks] -> [Kd + 1, Kd] by tag (row K is the start).

    Entries whose tags the source lacks keep ``dst``'s values.
    """
    rows = np.concatenate([tag_index, [src.shape[1]]])  # the start row maps to the start row
    out = dst.copy()
    out[np.ix_(rows >= 0, tag_index >= 0)] = src[np.ix_(rows[rows >= 0], tag_index[tag_index >= 0])]
    return out


def copy_matching(src_tagger, dst_tagger, intent_index: np.ndarray,
                  tag_index: np.ndarray) -> dict:
    """Copy weights layer by layer (matched by name) from ``src_tagger`` to ``dst_tagger``.

    Label layers (``LABEL_LAYERS``) are copied per label (``intent_index`` /
    ``tag_index`` from :func:`label_map`); every other weighted layer must have
    the same weight shapes in both.

    Returns:
        ``{"layers": n copied whole, "label_layers": n copied per label}``.

    Raises:
        InitFromError: a weighted layer is missing from ``src_tagger`` or its
            weight shapes differ (the runs' sizes differ).
    """
    def per_label(index):
        return lambda sw, dw: [_remap_last_axis(s, d, index) for s, d in zip(sw, dw)]

    names = {layer.name for layer in dst_tagger.layers if layer.weights}
    transforms = {name: per_label(intent_index if kind == "intents" else tag_index)
                  for name, kind in LABEL_LAYERS.items() if name in names}
    try:
        whole = copy_by_name(src_tagger, dst_tagger, transforms, allow_extra=True)
    except ValueError as e:
        raise InitFromError(f"{e} (the --init-from model is a different model or size)") from None
    return {"layers": whole, "label_layers": len(transforms)}


def init_from(source: InitSource, spec, size, size_name: str, model_name: str, model,
              labels, crf: bool) -> dict:
    """Load RUN's best float weights into ``model`` before float training.

    Args:
        source: :func:`read_source` of RUN, the folder of an earlier ``build``.
        spec: ``pipeline.ModelSpec`` of this run; size / size_name / model_name:
            this run's size dataclass, its name and the model name, which must be
            RUN's.
        model: this run's dynamic-length training model (a ``crf.CRFTagger``
            when ``crf``).
        labels: this run's ``train.Labels``.

    Returns:
        A summary: layers copied whole and per label, labels of this run found in
        RUN (intents, tags), whether CRF transitions were copied.

    Raises:
        InitFromError: RUN was built with another model, size or projection, or
            its checkpoint does not load.
    """
    from .crf import CRFTagger, unwrap

    run = source.run
    if (source.model, source.size) != (model_name, size_name):
        raise InitFromError(f"--init-from {run}: that run is {source.model} {source.size}, "
                            f"this one {model_name} {size_name}; they must be the same")
    proj = size.projection.summary()
    if source.projection != proj:
        diff = sorted(k for k in set(proj) | set(source.projection)
                      if proj.get(k) != source.projection.get(k))
        raise InitFromError(f"--init-from {run}: its projection differs from this run's in "
                            f"{', '.join(diff)}")
    vec = tuple(int(v) for v in size.projection.to_vector())
    if source.projection_vector is not None and source.projection_vector != vec:
        raise InitFromError(f"--init-from {run}: its projection differs from this run's in the "
                            "word list (as many words, other ones: see --words)")
    src = spec.build(size, num_intents=len(source.intents), num_tags=len(source.tags),
                     dynamic=True)
    holder = src
    if source.crf:
        k = len(source.tags)
        holder = CRFTagger(src, np.ones((k + 1, k), dtype=bool))
    try:
        holder.load_weights(source.checkpoint)
    except (ValueError, OSError) as e:
        raise InitFromError(f"--init-from {run}: cannot load {source.checkpoint} "
                            f"({' '.join(str(e).split())[:300]})") from None
    intent_index = label_map(source.intents, labels.intents)
    tag_index = label_map(source.tags, labels.tags)
    counts = copy_matching(src, unwrap(model), intent_index, tag_index)
    copied_crf = bool(crf and source.crf)
    if copied_crf:
        model.crf_transitions.assign(remap_transitions(
            holder.crf_transitions.numpy(), model.crf_transitions.numpy(), tag_index))
    summary = {"run": run, **counts,
               "intents_found": int((intent_index >= 0).sum()), "intents": len(labels.intents),
               "tags_found": int((tag_index >= 0).sum()), "tags": len(labels.tags),
               "crf_transitions": copied_crf}
    log.info("--init-from %s: %d layers copied whole, %d per label; %d of %d intents and "
             "%d of %d tags found there; CRF transitions %s", run, counts["layers"],
             counts["label_layers"], summary["intents_found"], summary["intents"],
             summary["tags_found"], summary["tags"], "copied" if copied_crf else "not copied")
    return summary
