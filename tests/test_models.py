"""Model-level checks that need no training: the dynamic-length and static pNLP-Mixer agree."""

import numpy as np
import pytest

from ondevice_nlp.models.pnlp_mixer import MixerConfig, build_pnlp_mixer, copy_weights


@pytest.mark.parametrize("activation,intent_to_slots", [("relu", False), ("gelu", False),
                                                        ("relu", True)])
def test_dynamic_length_model_equals_static_model(activation, intent_to_slots):
    """Weights copied static -> dynamic give the same outputs on real tokens, for any cut L."""
    import tf_keras as keras

    # Seeded weights: float32 summation order differs between the two models, and about one
    # unseeded run in eight here put an intent logit 1.2e-4 off (over atol); seeds 0-14
    # stay below 2.5e-5, with Keras' LayerNormalization as with QuantLayerNorm.
    keras.utils.set_random_seed(0)
    cfg = MixerConfig(hidden=32, num_blocks=2, token_hidden=16, channel_hidden=24,
                      token_activation=activation, intent_to_slots=intent_to_slots)
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


def test_intent_to_slots_adds_one_pooled_term_per_utterance():
    """With intent_to_slots the slot logits are the plain head's plus V @ pooled, the same
    vector on every token of an utterance; switching V to zero gives the plain head back."""
    kw = dict(max_tokens=8, feature_size=32, window=1, num_intents=3, num_tags=5)
    plain = build_pnlp_mixer(MixerConfig(hidden=16, num_blocks=1, token_hidden=8,
                                         channel_hidden=8), **kw)
    joint = build_pnlp_mixer(MixerConfig(hidden=16, num_blocks=1, token_hidden=8,
                                         channel_hidden=8, intent_to_slots=True), **kw)
    assert joint.count_params() == plain.count_params() + 16 * 5
    for layer in plain.layers:
        if layer.get_weights():
            joint.get_layer(layer.name).set_weights(layer.get_weights())
    rng = np.random.default_rng(2)
    f = rng.integers(0, 3, (2, 8, 32)).astype(np.float32)
    m = np.array([[1, 1, 1, 0, 0, 0, 0, 0], [1] * 6 + [0] * 2], np.float32)
    _, p_slots = (t.numpy() for t in plain({"features": f, "mask": m}))
    _, j_slots = (t.numpy() for t in joint({"features": f, "mask": m}))
    diff = j_slots - p_slots
    np.testing.assert_allclose(diff, np.broadcast_to(diff[:, :1], diff.shape), atol=1e-5)
    assert np.abs(diff).max() > 1e-3
    joint.get_layer("slots_from_intent").set_weights([np.zeros((16, 5), np.float32)])
    _, j_slots = (t.numpy() for t in joint({"features": f, "mask": m}))
    np.testing.assert_allclose(j_slots, p_slots, atol=1e-6)


def test_quant_layer_norm_equals_keras_layer_norm_in_float():
    import tf_keras as keras

    from ondevice_nlp.models.pnlp_mixer import QuantLayerNorm

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3, 5, 16)) * 3 + 1).astype("float32")
    ref, ours = keras.layers.LayerNormalization(epsilon=1e-5), QuantLayerNorm(epsilon=1e-5)
    ref.build(x.shape)
    ours.build(x.shape)
    weights = [rng.normal(size=16).astype("float32") for _ in range(2)]
    ref.set_weights(weights)
    ours.set_weights(weights)  # same weights, same order (gamma, beta)
    np.testing.assert_allclose(ours(x).numpy(), ref(x).numpy(), atol=2e-5)
    with pytest.raises(ValueError, match="last axis"):
        QuantLayerNorm(axis=1).build((2, 5, 16))
    with pytest.raises(ValueError, match="center"):
        QuantLayerNorm(center=False)


def test_quant_layer_norm_ranges_reach_the_tflite_file(tmp_path):
    """QAT gives the LayerNorm's variance and 1/std their own EMA ranges, and the int8
    .tflite's variance / RSQRT tensors take those ranges (not the converter's calibration,
    which clipped real variances: see QuantLayerNorm)."""
    import tf_keras as keras

    from ondevice_nlp import train as T
    from ondevice_nlp.configs import get_size
    from ondevice_nlp.export import export
    from ondevice_nlp.ops import make_interpreter

    keras.utils.set_random_seed(0)
    size = get_size("tiny")
    proj = size.projection
    model = build_pnlp_mixer(size.net, max_tokens=proj.max_tokens, feature_size=proj.feature_size,
                             window=size.window, num_intents=3, num_tags=5)
    qat = T.quantize_aware(model)
    ln = qat.get_layer("quant_b0_token_ln")
    ranges = {}
    for w in ln.weights:
        for hook in ("ln_centred", "ln_square", "ln_variance", "ln_inv_std"):
            if hook in w.name:
                ranges.setdefault(hook, {})["min" if "min" in w.name.split("/")[-1] else "max"] = w
    assert set(ranges) == {"ln_centred", "ln_square", "ln_variance", "ln_inv_std"}
    # give them distinctive ranges, as QAT training would
    ranges["ln_variance"]["min"].assign(0.0)
    ranges["ln_variance"]["max"].assign(7.65)
    ranges["ln_inv_std"]["min"].assign(0.0)
    ranges["ln_inv_std"]["max"].assign(2.55)
    texts = [b"set an alarm for 7 am", b"play some jazz", b"what is the weather"] * 4
    export(qat, proj, texts, {"labels": {"intents": ["a", "b", "c"], "tags": ["O"] * 5}},
           str(tmp_path / "m.tflite"))
    interp = make_interpreter(str(tmp_path / "m.tflite"))
    scales = {}
    for d in interp.get_tensor_details():
        name = d["name"]
        if name.startswith("pnlp_mixer/quant_b0_token_ln/") and d["dtype"] == np.int8 and \
                len(d["shape"]) == 3 and d["shape"][-1] == 1:
            scales[name] = d["quantization"][0]
    # the variance tensor: 7.65 / 255 = 0.03; the 1/std tensor: 2.55 / 255 = 0.01
    assert any(abs(s - 0.03) < 1e-6 for s in scales.values()), scales
    assert any(abs(s - 0.01) < 1e-6 for s in scales.values()), scales


@pytest.mark.parametrize("size, params", [("base", 1_090_575), ("xlarge", 4_290_567)])
def test_named_sizes_have_the_documented_parameter_counts(size, params):
    """With MTOP en's training labels (113 intents, 149 BIO tags) the named sizes have the
    counts configs.py, the Makefile and README state (the build logs the same figure)."""
    from ondevice_nlp import pipeline

    spec = pipeline.model_spec("pnlp_mixer")
    sz = spec.get_size(size, None, None)
    model = spec.build(sz, dynamic=False, num_intents=113, num_tags=149)
    assert model.count_params() == params
    assert sz.projection == spec.get_size("base", None, None).projection


def test_base_w3_reads_seven_tokens_with_no_more_bottleneck_weights_than_base():
    """Size base-w3 (configs.py; README "Thai with a wider window"): the bottleneck reads tokens
    t-3 .. t+3 over F=432 buckets, and its kernel is no larger than base's (3 x 1024 x 216)."""
    import tf_keras as keras
    from ondevice_nlp import pipeline

    spec = pipeline.model_spec("pnlp_mixer")
    base, wide = spec.get_size("base", None, None), spec.get_size("base-w3", None, None)
    assert (wide.window, wide.projection.feature_size) == (3, 432)
    assert wide.projection.shape == 1 and wide.projection.window == 0
    model = spec.build(wide, dynamic=False, num_intents=113, num_tags=149)
    assert model.count_params() == 1_080_207  # base 1,090,575 less 3*1024*216 - 7*432*216
    kernel = model.get_layer("bottleneck").kernel
    assert tuple(kernel.shape) == (7, 432, 216)
    base_model = spec.build(base, dynamic=False, num_intents=113, num_tags=149)
    assert np.prod(kernel.shape) <= np.prod(base_model.get_layer("bottleneck").kernel.shape)

    # the bottleneck output at token 10 moves with token 13's features, not with token 14's
    probe = keras.Model(model.inputs, model.get_layer("bottleneck").output)
    rng = np.random.default_rng(0)
    feats = rng.uniform(0, 2, (1, 64, 432)).astype(np.float32)
    mask = np.ones((1, 64), np.float32)
    assert [i.name.split(":")[0] for i in model.inputs] == ["features", "mask"]

    def at10(f):
        return probe([f, mask], training=False).numpy()[0, 10]

    ref = at10(feats)
    for t, moves in ((13, True), (7, True), (14, False), (6, False)):
        changed = feats.copy()
        changed[0, t] += 1.0
        assert (not np.allclose(at10(changed), ref)) == moves, t


def test_base_ng4_is_base_with_letter_ngrams_in_the_projection():
    """Size base-ng4 (configs.py; README "Thai with letter n-grams"): base's network and
    parameter count over a projection of config version 3 (ngram=4)."""
    import dataclasses

    from ondevice_nlp import pipeline

    spec = pipeline.model_spec("pnlp_mixer")
    base, ng4 = spec.get_size("base", None, None), spec.get_size("base-ng4", None, None)
    assert ng4.projection == dataclasses.replace(base.projection, ngram=4)
    assert ng4.projection.to_vector().tolist()[0] == 3
    assert (ng4.window, ng4.net) == (base.window, base.net)
    assert spec.build(ng4, dynamic=False, num_intents=113, num_tags=149).count_params() == 1_090_575
    # build's --max-tokens override keeps the n-grams
    assert spec.get_size("base-ng4", 32, None).projection.ngram == 4


def test_token_dropout_zeroes_whole_tokens_in_float_training_only():
    """Word dropout: in training each token's F features are all zeroed or all scaled by
    1/(1-p); at inference, and in the static model QAT and export use, it is absent."""
    import tf_keras as keras

    keras.utils.set_random_seed(3)
    cfg = MixerConfig(hidden=16, num_blocks=1, token_hidden=8, channel_hidden=8, dropout=0.0,
                      feature_dropout=0.0, token_dropout=0.5)
    kw = dict(max_tokens=12, feature_size=32, window=1, num_intents=3, num_tags=4)
    dynamic = build_pnlp_mixer(cfg, dynamic_length=True, **kw)
    static = build_pnlp_mixer(cfg, **kw)
    assert "token_dropout" in [layer.name for layer in dynamic.layers]
    assert "token_dropout" not in [layer.name for layer in static.layers]
    copy_weights(dynamic, static)  # no weights of its own: the two models still correspond

    layer = dynamic.get_layer("token_dropout")
    f = np.random.default_rng(0).uniform(1.0, 2.0, (8, 12, 32)).astype(np.float32)
    out = layer(f, training=True).numpy()
    zeroed = np.all(out == 0.0, axis=-1)
    kept = np.all(np.isclose(out, 2.0 * f), axis=-1)
    assert np.all(zeroed | kept)  # never a token half dropped
    assert 0.3 < zeroed.mean() < 0.7  # 96 tokens, p = 0.5
    np.testing.assert_array_equal(layer(f, training=False).numpy(), f)


def test_copy_by_name_copies_transforms_and_names_the_layer_that_differs():
    """models.copy_by_name: whole layers copied exactly, a transform's layer gets its output,
    extra source layers only with allow_extra, and a shape or name mismatch names the layer."""
    import tf_keras as keras

    from ondevice_nlp.models import copy_by_name

    def net(name, head, extra=False):
        x = inp = keras.Input((4,))
        x = keras.layers.Dense(3, name="body")(x)
        if extra:
            x = keras.layers.Dense(3, name="more")(x)
        return keras.Model(inp, keras.layers.Dense(head, name="head")(x), name=name)

    keras.utils.set_random_seed(0)
    src, dst = net("src", 2, extra=True), net("dst", 5)
    head_before = dst.get_layer("head").get_weights()
    with pytest.raises(ValueError, match=r"only in src: \['more'\]"):
        copy_by_name(src, dst)
    with pytest.raises(ValueError, match=r"layer head: weight shapes"):
        copy_by_name(src, dst, allow_extra=True)
    # the head: the source's 2 outputs become the first 2 of 5, the rest stays as it was
    def first_two(sw, dw):
        return [np.concatenate([s, d[..., 2:]], axis=-1) for s, d in zip(sw, dw)]

    assert copy_by_name(src, dst, {"head": first_two}, allow_extra=True) == 1
    for a, b in zip(src.get_layer("body").get_weights(), dst.get_layer("body").get_weights()):
        np.testing.assert_array_equal(a, b)
    for s, d, before in zip(src.get_layer("head").get_weights(),
                            dst.get_layer("head").get_weights(), head_before):
        np.testing.assert_array_equal(d[..., :2], s)
        np.testing.assert_array_equal(d[..., 2:], before[..., 2:])
    with pytest.raises(ValueError, match=r"only in dst: \[\], only in src: \['more'\]"):
        copy_by_name(dst, src, allow_extra=True)  # src lacks a layer of the destination
