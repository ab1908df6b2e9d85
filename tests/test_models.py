"""Model-level checks that need no training: the dynamic-length and static pNLP-Mixer agree."""

import numpy as np
import pytest

from ondevice_nlp.models.pnlp_mixer import MixerConfig, build_pnlp_mixer, copy_weights


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_dynamic_length_model_equals_static_model(activation):
    """Weights copied static -> dynamic give the same outputs on real tokens, for any cut L."""
    cfg = MixerConfig(hidden=32, num_blocks=2, token_hidden=16, channel_hidden=24,
                      token_activation=activation)
    kw = dict(max_tokens=16, feature_size=64, window=1, num_intents=5, num_tags=7)
    static = build_pnlp_mixer(cfg, **kw)
    dynamic = build_pnlp_mixer(cfg, dynamic_length=True, **kw)
    copy_weights(static, dynamic)
    rng = np.random.default_rng(0)
    lens = [3, 7, 5, 1]
    f = np.zeros((4, 16, 64), np.float32)
    m = np.zeros((4, 16), np.float32)
    for i, n in enumerate(lens):
        f[i, :n] = rng.integers(0, 3, (n, 64))
        m[i, :n] = 1
    s_int, s_slots = (t.numpy() for t in static({"features": f, "mask": m}))
    for cut in (7, 12, 16):
        d_int, d_slots = (t.numpy() for t in dynamic({"features": f[:, :cut], "mask": m[:, :cut]}))
        assert d_slots.shape == (4, cut, 7)
        np.testing.assert_allclose(d_int, s_int, atol=1e-4)
        for i, n in enumerate(lens):
            np.testing.assert_allclose(d_slots[i, :n], s_slots[i, :n], atol=1e-4)
    # and back: dynamic -> a fresh static model reproduces the same outputs
    again = build_pnlp_mixer(cfg, **kw)
    copy_weights(dynamic, again)
    a_int, _ = (t.numpy() for t in again({"features": f, "mask": m}))
    np.testing.assert_allclose(a_int, s_int, atol=1e-5)


def test_padding_content_does_not_change_real_outputs():
    """Junk features at padding positions must not leak into real positions (masked mixing)."""
    cfg = MixerConfig(hidden=16, num_blocks=1, token_hidden=8, channel_hidden=8)
    model = build_pnlp_mixer(cfg, max_tokens=8, feature_size=32, window=0, num_intents=3,
                             num_tags=4)
    rng = np.random.default_rng(1)
    f = rng.integers(0, 3, (2, 8, 32)).astype(np.float32)
    m = np.array([[1, 1, 1, 0, 0, 0, 0, 0], [1] * 5 + [0] * 3], np.float32)
    clean = f * m[:, :, None]
    a_int, a_slots = (t.numpy() for t in model({"features": clean, "mask": m}))
    b_int, b_slots = (t.numpy() for t in model({"features": f, "mask": m}))
    np.testing.assert_allclose(a_int, b_int, atol=1e-5)
    np.testing.assert_allclose(a_slots[m > 0], b_slots[m > 0], atol=1e-5)


def test_copy_weights_rejects_a_different_model():
    cfg = MixerConfig(hidden=16, num_blocks=1, token_hidden=8, channel_hidden=8)
    a = build_pnlp_mixer(cfg, max_tokens=8, feature_size=32, window=0, num_intents=3, num_tags=4)
    b = build_pnlp_mixer(MixerConfig(hidden=16, num_blocks=2, token_hidden=8, channel_hidden=8),
                         max_tokens=8, feature_size=32, window=0, num_intents=3, num_tags=4)
    with pytest.raises(ValueError, match="b1_"):
        copy_weights(a, b)
