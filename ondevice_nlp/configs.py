"""Named model sizes.

A size fixes the projection (``ProjectionConfig``; the op always runs with
window 0 and the bottleneck convolution applies the window, see
``models/pnlp_mixer.py``) and the network (``MixerConfig``). Parameter
counts and int8 ``.tflite`` bytes for MTOP heads are printed by
``ondevice-nlp build`` and recorded in README.md.
"""

from __future__ import annotations

import dataclasses

from .models import ModelSize
from .models.pnlp_mixer import MixerConfig
from .projection_ref import ProjectionConfig

__all__ = ["ModelSize", "SIZES", "get_size"]


SIZES = {
    # ~0.2 M parameters (paper's X-Small: F=1024, w=0, H=64, 2 blocks).
    "xsmall": ModelSize(ProjectionConfig("minhash", 1024, 64, 0, 64, 0), 0,
                        MixerConfig(hidden=64, num_blocks=2, token_hidden=64, channel_hidden=64)),
    # ~1.1 M parameters, about 1.17 MB int8: the paper's Base (F=1024, w=1, 2 blocks) with
    # H=216 so that the int8 file stays below 1.2 MB with MTOP's labels, token shape
    # features (projection config v2: capitals, digits) and slot logits that also read the
    # pooled intent vector (intent_to_slots, +33 K parameters at H=224).
    # Dropout 0.3 on residual branches and on MinHash buckets (with weight decay 0.05): with
    # 0.2 (and 0.01) the MTOP en model reached training loss 0.03 while eval exact match
    # stalled at 0.70; the stronger setting tracked it within +-1.5 points over 26 epochs.
    "base": ModelSize(ProjectionConfig("minhash", 1024, 64, 0, 64, 0, shape=1), 1,
                      MixerConfig(hidden=216, num_blocks=2, token_hidden=256, channel_hidden=256,
                                  dropout=0.3, feature_dropout=0.3, intent_to_slots=True)),
    # base with a wider bottleneck window (w=3: 7 neighbouring tokens, against base's 3) over
    # fewer MinHash buckets (F=432, against 1024), so that the bottleneck keeps base's
    # parameter count (7 * 432 * 216 = 653 K against 3 * 1024 * 216 = 664 K). For scripts
    # written without spaces (Thai), where the tokenizer gives one token per character
    # (``projection_ref`` step 2) and base's window sees 3 characters (README "Thai with a
    # wider window": 63.1 MTOP th EM against base's 62.8, one run each: no clear gain).
    "base-w3": ModelSize(ProjectionConfig("minhash", 432, 64, 0, 64, 0, shape=1), 3,
                         MixerConfig(hidden=216, num_blocks=2, token_hidden=256,
                                     channel_hidden=256, dropout=0.3, feature_dropout=0.3,
                                     intent_to_slots=True)),
    # base whose projection adds letter n-grams (config version 3, ngram=4): a token of a script
    # written without spaces (a Thai letter) adds to its own features a second MinHash
    # fingerprint over the 2-4 letter stretches around it (syllables, short words;
    # ``projection_ref`` step 5), which base's linear bottleneck over single letters cannot
    # form. Other scripts' features are base's. Same network and parameter count as base.
    # README "Thai with letter n-grams": MTOP th test EM 62.4 against base's 62.8 (eval EM 0.609
    # against 0.587), one run each: no gain on test.
    "base-ng4": ModelSize(ProjectionConfig("minhash", 1024, 64, 0, 64, 0, shape=1, ngram=4), 1,
                          MixerConfig(hidden=216, num_blocks=2, token_hidden=256,
                                      channel_hidden=256, dropout=0.3, feature_dropout=0.3,
                                      intent_to_slots=True)),
    # Teacher for distillation (``ondevice-nlp teacher``, ``ondevice_nlp/distill.py``), float
    # only, never exported: ~10 M parameters, ten times base, wider (H=640) and deeper (4 blocks);
    # same projection as base, so it reads the same tokens as a base student.
    "teacher": ModelSize(ProjectionConfig("minhash", 1024, 64, 0, 64, 0, shape=1), 1,
                         MixerConfig(hidden=640, num_blocks=4, token_hidden=256,
                                     channel_hidden=1536, dropout=0.2, feature_dropout=0.2,
                                     intent_to_slots=True)),
    # A larger member for ensemble teachers (README "Teacher and distillation", X-Large):
    # the paper's X-Large depth and width (4 blocks, H=512; Fusco et al. 2022, Table 5: 83.4
    # MTOP en EM against Base's 81.8) over base's projection (F=1024, not the paper's 2048, so
    # it reads the same features as a base student); 4.29 M parameters with MTOP en's labels.
    "xlarge": ModelSize(ProjectionConfig("minhash", 1024, 64, 0, 64, 0, shape=1), 1,
                        MixerConfig(hidden=512, num_blocks=4, token_hidden=256,
                                    channel_hidden=512, dropout=0.3, feature_dropout=0.3,
                                    intent_to_slots=True)),
    # A few steps of training only: for tests.
    "tiny": ModelSize(ProjectionConfig("minhash", 64, 16, 0, 16, 0), 1,
                      MixerConfig(hidden=16, num_blocks=1, token_hidden=16, channel_hidden=16,
                                  dropout=0.0, feature_dropout=0.0)),
}


def get_size(name: str, max_tokens: int | None = None, sizes: dict | None = None,
             kind: str = "model"):
    """Look up a size by name, optionally overriding the sequence length S.

    ``sizes`` is the table to look in (default ``SIZES``, the pNLP-Mixer sizes;
    ``models.pqrnn.QRNN_SIZES`` for pQRNN); its entries are dataclasses with a
    ``projection`` field. ``kind`` names the table in the error message.

    Raises:
      ValueError: unknown name.
    """
    sizes = SIZES if sizes is None else sizes
    if name not in sizes:
        raise ValueError(f"unknown {kind} size {name!r}; choose from {sorted(sizes)}")
    size = sizes[name]
    if max_tokens is not None:
        size = dataclasses.replace(
            size, projection=dataclasses.replace(size.projection, max_tokens=max_tokens))
    return size
