"""`ondevice-nlp build --init-from RUN` (warm_start.py): label-by-label weight transfer."""

import json
import random

import numpy as np
import pytest

from ondevice_nlp import cli, warm_start
from test_pipeline import _line, _make_examples, write_mtop  # noqa: E402  (tests/ on sys.path)

BUILD = ["--size", "tiny", "--epochs", "2", "--qat-epochs", "1", "--batch-size", "16",
         "--lr", "1e-2", "--qat-lr", "1e-3"]


def test_label_map():
    assert warm_start.label_map(["a", "b", "c"], ["c", "x", "a"]).tolist() == [2, -1, 0]
    assert warm_start.label_map([], ["a"]).tolist() == [-1]


def test_remap_last_axis_and_transitions():
    src = np.arange(6, dtype=np.float32).reshape(2, 3)       # 3 source labels
    dst = np.full((2, 2), -1.0, dtype=np.float32)             # 2 labels: src #2 and a new one
    out = warm_start._remap_last_axis(src, dst, np.array([2, -1]))
    assert out.tolist() == [[2.0, -1.0], [5.0, -1.0]]
    # transitions [K + 1, K], row K the start
    ts = np.arange(12, dtype=np.float32).reshape(4, 3)         # Ks = 3
    td = np.full((3, 2), -9.0, dtype=np.float32)               # Kd = 2: src tags 1, then new
    got = warm_start.remap_transitions(ts, td, np.array([1, -1]))
    assert got.tolist() == [[ts[1, 1], -9.0], [-9.0, -9.0], [ts[3, 1], -9.0]]


def _weather_alarm_message(rng, n):
    return _make_examples(rng, n)


def _with_music(rng, n):
    """Two of the source's intents, and one it never saw (with a new slot type)."""
    out = []
    for line in _make_examples(rng, n):
        if "CREATE_ALARM" in line:
            g = rng.choice(["jazz", "rock", "bossa nova"])
            line = _line(f"play some {g}", "PLAY_MUSIC", [("MUSIC_GENRE", g)])
        out.append(line)
    return out


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    rng = random.Random(1)
    root = write_mtop(tmp_path_factory.mktemp("src_data"), {
        s: _weather_alarm_message(rng, n) for s, n in (("train", 160), ("eval", 20), ("test", 20))})
    out = tmp_path_factory.mktemp("src_run")
    assert cli.main(["build", "--dataset", "mtop", "--data-dir", str(root), "--languages", "en",
                     "--out", str(out), *BUILD]) == 0
    rng = random.Random(2)
    dst_root = write_mtop(tmp_path_factory.mktemp("dst_data"), {
        s: _with_music(rng, n) for s, n in (("train", 160), ("eval", 20), ("test", 20))})
    return out, dst_root


def _tagger_and_crf(run, intents, tags):
    """The float checkpoint of `run` loaded into a fresh tiny CRF model."""
    from ondevice_nlp.crf import CRFTagger
    from ondevice_nlp.pipeline import model_spec

    spec = model_spec("pnlp_mixer")
    size = spec.get_size("tiny", None, None)
    tagger = spec.build(size, num_intents=len(intents), num_tags=len(tags), dynamic=True)
    holder = CRFTagger(tagger, np.ones((len(tags) + 1, len(tags)), dtype=bool))
    holder.load_weights(str(run / "checkpoints" / "float.weights.h5"))
    return tagger, holder.crf_transitions.numpy()


def test_init_from_copies_weights_label_by_label(source_run, tmp_path):
    """With learning rate 0 the new run's best float weights are exactly what --init-from
    loaded: shared layers equal the source's, heads and CRF transitions equal it label by
    label, and the new intent's and tags' entries are not the source's."""
    src_run, dst_root = source_run
    out = tmp_path / "dst"
    assert cli.main(["build", "--dataset", "mtop", "--data-dir", str(dst_root), "--languages", "en",
                     "--out", str(out), "--size", "tiny", "--epochs", "1", "--qat-epochs", "1",
                     "--batch-size", "16", "--lr", "0", "--init-from", str(src_run)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    s = m["init_from"]
    assert (s["intents_found"], s["intents"]) == (2, 3)        # PLAY_MUSIC is new
    assert (s["tags_found"], s["tags"]) == (5, 7)              # O, LOCATION, RECIPIENT (B/I)
    assert s["crf_transitions"] is True and s["label_layers"] >= 2 and s["layers"] > 5

    src_meta = warm_start.read_source(str(src_run))
    dst_meta = warm_start.read_source(str(out))
    src, src_crf = _tagger_and_crf(src_run, src_meta.intents, src_meta.tags)
    dst, dst_crf = _tagger_and_crf(out, dst_meta.intents, dst_meta.tags)
    ii = warm_start.label_map(src_meta.intents, dst_meta.intents)
    ti = warm_start.label_map(src_meta.tags, dst_meta.tags)
    assert (ii >= 0).sum() == 2 and (ti >= 0).sum() == 5
    src_layers = {layer.name: layer for layer in src.layers}
    for layer in dst.layers:
        if not layer.weights:
            continue
        for a, b in zip(src_layers[layer.name].get_weights(), layer.get_weights()):
            if layer.name in warm_start.LABEL_LAYERS:
                index = ii if warm_start.LABEL_LAYERS[layer.name] == "intents" else ti
                np.testing.assert_array_equal(b[..., index >= 0], a[..., index[index >= 0]])
                if b.ndim == 2:  # kernels: a new label's column is fresh, no source column
                    for j in np.flatnonzero(index < 0):
                        assert not any(np.array_equal(b[:, j], a[:, k]) for k in range(a.shape[1]))
            else:
                np.testing.assert_array_equal(b, a)
    have = np.flatnonzero(ti >= 0)
    np.testing.assert_array_equal(dst_crf[np.ix_(have, have)], src_crf[np.ix_(ti[have], ti[have])])
    np.testing.assert_array_equal(dst_crf[-1, have], src_crf[-1, ti[have]])  # start row
    assert np.all(dst_crf[:, ti < 0] == 0.0)  # a new tag's transitions start at zero


def _build_error(capsys, *args):
    rc = cli.main(["build", "--dataset", "mtop", *args])
    return rc, capsys.readouterr().err


def test_init_from_errors(source_run, tmp_path, capsys):
    src_run, dst_root = source_run
    common = ["--data-dir", str(dst_root), "--languages", "en", *BUILD]
    rc, err = _build_error(capsys, *common, "--out", str(tmp_path / "a"),
                           "--init-from", str(tmp_path / "nowhere"))
    assert rc == 2 and "model.tflite" in err and "does not exist" in err
    rc, err = _build_error(capsys, *common, "--out", str(tmp_path / "b"),
                           "--init-from", str(src_run), "--max-tokens", "12")
    assert rc == 2 and "projection differs" in err and "max_tokens" in err
    rc, err = _build_error(capsys, *common, "--out", str(tmp_path / "c"), "--model", "pqrnn",
                           "--init-from", str(src_run))
    assert rc == 2 and "pnlp_mixer tiny" in err and "must be the same" in err
    bad = tmp_path / "bad"
    (bad / "checkpoints").mkdir(parents=True)
    (bad / "model.tflite").write_bytes(b"not a flatbuffer at all")
    (bad / "checkpoints" / "float.weights.h5").write_bytes(b"")
    rc, err = _build_error(capsys, *common, "--out", str(tmp_path / "d"), "--init-from", str(bad))
    assert rc == 2 and str(bad / "model.tflite") in err
    # a model of ours whose metadata lost its label lists
    from ondevice_nlp.tflite_model import add_metadata, read_metadata
    buf = (src_run / "model.tflite").read_bytes()
    meta = read_metadata(buf)
    del meta["labels"]
    (bad / "model.tflite").write_bytes(add_metadata(buf, meta))
    rc, err = _build_error(capsys, *common, "--out", str(tmp_path / "e"), "--init-from", str(bad))
    assert rc == 2 and "no label lists" in err and str(bad / "model.tflite") in err


def test_init_from_checks_the_word_list(source_run, tmp_path, capsys):
    """A run built with --words warm-starts a run with the same list; a list of as many words
    of as many letters (same metadata) but other words is refused: the file's op config says."""
    src_run, dst_root = source_run
    lists = {}
    for name, word in (("a", "ส่ง"), ("b", "หา")):  # one word of 2 letters each
        lists[name] = tmp_path / f"{name}.txt"
        lists[name].write_text(word + "\n", encoding="utf-8")
    common = ["build", "--dataset", "mtop", "--data-dir", str(dst_root), "--languages", "en",
              *BUILD]
    assert cli.main([*common, "--out", str(tmp_path / "src"), "--words", str(lists["a"])]) == 0
    assert cli.main([*common, "--out", str(tmp_path / "ok"), "--words", str(lists["a"]),
                     "--init-from", str(tmp_path / "src")]) == 0
    rc, err = _build_error(capsys, "--data-dir", str(dst_root), "--languages", "en", *BUILD,
                           "--out", str(tmp_path / "other"), "--words", str(lists["b"]),
                           "--init-from", str(tmp_path / "src"))
    assert rc == 2 and "differs from this run's in the word list" in err
