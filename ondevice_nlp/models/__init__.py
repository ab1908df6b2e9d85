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
