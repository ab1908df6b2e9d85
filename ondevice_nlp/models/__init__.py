"""The networks: pNLP-Mixer (``pnlp_mixer``), pQRNN (``pqrnn``) and the
BiLSTM / transformer baselines (``baselines``), and the named-size record
they share."""

from __future__ import annotations

import dataclasses

from ..projection_ref import ProjectionConfig


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """A named size of any model: projection settings, window and network.

    Attributes:
      projection: the projection op's settings (``ProjectionConfig``); its
        ``max_tokens`` is the sequence length S.
      window: neighbouring tokens on each side that the model's first layer
        reads (pNLP-Mixer's bottleneck convolution; 0 for the others).
      net: the network's config: ``pnlp_mixer.MixerConfig``,
        ``pqrnn.QRNNConfig``, ``baselines.BiLSTMConfig`` or
        ``baselines.TransformerConfig``.
    """

    projection: ProjectionConfig
    window: int
    net: object


def copy_by_name(src, dst, transforms=None, allow_extra: bool = False) -> int:
    """Copy weights from Keras model ``src`` to ``dst``, layer by layer, matched by name.

    Used between a model's dynamic-length and static (export) builds, and by
    ``build --init-from`` (``warm_start``). Only layers with weights take part.

    Args:
      transforms: ``{layer name: f(src_weights, dst_weights) -> weights}``;
        such a layer gets ``f``'s weights (lists of NumPy arrays; used to copy a
        head label by label) instead of ``src``'s, and no shape check.
      allow_extra: ``src`` may have weighted layers that ``dst`` lacks.

    Returns:
      The number of layers copied whole (without a transform).

    Raises:
      ValueError: a weighted layer of ``dst`` is missing from ``src`` (or, unless
        ``allow_extra``, the other way round), or a layer's weight shapes differ;
        the message names the layer.
    """
    transforms = transforms or {}
    s = {layer.name: layer for layer in src.layers if layer.weights}
    d = {layer.name: layer for layer in dst.layers if layer.weights}
    missing, extra = sorted(set(d) - set(s)), sorted(set(s) - set(d))
    if missing or (extra and not allow_extra):
        raise ValueError(f"layers differ: only in {src.name}: {extra}, only in {dst.name}: "
                         f"{missing}")
    whole = 0
    for name, layer in d.items():
        sw = s[name].get_weights()
        if name in transforms:
            layer.set_weights(transforms[name](sw, layer.get_weights()))
            continue
        shapes = [w.shape for w in sw], [tuple(v.shape) for v in layer.weights]
        if shapes[0] != shapes[1]:
            raise ValueError(f"layer {name}: weight shapes {shapes[0]} in {src.name}, "
                             f"{shapes[1]} in {dst.name}")
        layer.set_weights(sw)
        whole += 1
    return whole
