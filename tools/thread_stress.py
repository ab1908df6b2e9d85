"""Many threads running one exported model at once, answers checked against sequential runs.

Each repetition: one model object, ``--threads`` threads started together (a barrier), each
running ``--rounds`` rounds of ``--batch`` single-text calls then one call with all ``--batch``
texts of its own slice (seeded hostile texts, ``tools/hostile_text.py``, plus plain ones); every
answer is compared with the same calls made first, one after the other, in the main thread.

``--mode model`` runs ``ondevice_nlp.TFLiteModel`` (one interpreter per thread and batch size)
and compares its predictions. ``--mode resize`` runs what ``TFLiteModel`` did before commit
"TFLiteModel: one interpreter per thread and batch size": one interpreter per thread, its input
resized between batch 1 and ``--batch``; it compares the raw outputs (``intent_probs`` and, where
present, ``slot_logits``) bit for bit. ai-edge-litert 2.3's XNNPACK delegate sometimes answers
wrongly on the first run after such a resize; load on the machine makes it more frequent, so run
beside other work to see it.

Prints one line per mismatching (repetition, thread, round) and a summary line
``mode ... reps R threads T rounds N: M mismatches`` (one per thread, round and kind of
call that differed); exit status 1 when M > 0.

    .venv/bin/python tools/thread_stress.py --write-tiny /tmp/tiny.tflite  # untrained, 33 KB
    .venv/bin/python tools/thread_stress.py /tmp/tiny.tflite --mode resize --reps 100
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_text  # noqa: E402

PLAIN = ["wake me up at 7 am tomorrow", "what is the weather in paris", "call mom",
         "ตั้งนาฬิกาปลุกตอนเจ็ดโมง", "kal subah 7 baje alarm lagao", "¿qué tiempo hace en Madrid?"]


def tiny_model(intents: list[str], slot_types: list[str]):
    """An untrained pNLP-Mixer of size ``tiny`` (seed 0) for ``intents`` and the BIO tags of
    ``slot_types``, with the metadata ``export.export`` writes beside it: returns
    ``(keras_model, projection_config, meta)``. Shared with ``tests/test_hostile_models.py``."""
    import tf_keras as keras

    from ondevice_nlp import tagging
    from ondevice_nlp.configs import get_size
    from ondevice_nlp.models.pnlp_mixer import build_pnlp_mixer

    keras.utils.set_random_seed(0)
    size = get_size("tiny")
    tags = tagging.bio_labels(slot_types)
    model = build_pnlp_mixer(size.net, max_tokens=size.projection.max_tokens,
                             feature_size=size.projection.feature_size, window=size.window,
                             num_intents=len(intents), num_tags=len(tags))
    meta = {"model": "pnlp_mixer", "size": "tiny", "dataset": "mtop", "languages": ["en"],
            "projection": size.projection.summary(), "window": size.window,
            "labels": {"intents": list(intents), "tags": tags},
            "parameters": int(model.count_params())}
    return model, size.projection, meta


def write_tiny(path: str) -> None:
    """Export ``tiny_model`` (4 intents, 3 slot types) to ``path``, calibrated on ``PLAIN``: like
    the model of ``tests/test_hostile_models.py``, small enough that a run is mostly interpreter
    overhead."""
    from ondevice_nlp.export import export

    model, proj, meta = tiny_model(["CREATE_ALARM", "GET_WEATHER", "SEND_MESSAGE", "PLAY_MUSIC"],
                                   ["DATE_TIME", "LOCATION", "PERSON"])
    export(model, proj, [t.encode() for t in PLAIN], meta, path)


class _Resizing:
    """One interpreter per thread, resized between batch sizes (TFLiteModel's former way)."""

    def __init__(self, path: str, op_resolver: str):
        self.buf = Path(path).read_bytes()
        self.op_resolver = op_resolver
        self._local = threading.local()
        self.answer([b"x"])

    def answer(self, texts):
        from ondevice_nlp import ops
        from ondevice_nlp.tflite_model import SIGNATURE_KEY, _text_bytes
        runner = getattr(self._local, "runner", None)
        if runner is None:
            interp = ops.make_interpreter(model_content=self.buf, op_resolver=self.op_resolver)
            interp.allocate_tensors()
            runner = self._local.runner = interp.get_signature_runner(SIGNATURE_KEY)
        out = runner(text=np.array([_text_bytes(t) for t in texts], dtype=object))
        keys = [k for k in ("intent_probs", "slot_logits") if k in out]
        return [tuple(out[k][i].tobytes() for k in keys) for i in range(len(texts))]


class _Model:
    def __init__(self, path: str, op_resolver: str):
        from ondevice_nlp.tflite_model import TFLiteModel
        self.model = TFLiteModel(path, op_resolver=op_resolver)

    def answer(self, texts):
        return self.model.predict_batch(texts)


def one_rep(make, slices, rounds: int, timeout: float | None = None):
    """Mismatching (thread, round, part) triples of one repetition: one thread per slice of
    texts (part 0: its single-text calls, 1: its batch call), each answer compared with the same
    call made first in the calling thread. ``make()`` gives the model object (``answer(texts)``).

    Raises RuntimeError: a thread raised, or had not finished after ``timeout`` seconds."""
    m = make()
    want = [([m.answer([t])[0] for t in ts], m.answer(ts)) for ts in slices]
    barrier = threading.Barrier(len(slices))
    got: list = [None] * len(slices)
    errors: list = []

    def work(k):
        try:
            barrier.wait()
            got[k] = [([m.answer([t])[0] for t in slices[k]], m.answer(slices[k]))
                      for _ in range(rounds)]
        except Exception as e:  # noqa: BLE001  raised in the calling thread below
            errors.append((k, repr(e)))

    pool = [threading.Thread(target=work, args=(k,)) for k in range(len(slices))]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout)
    if errors or any(g is None for g in got):
        raise RuntimeError(f"threads failed: {errors}; unfinished: "
                           f"{[k for k, g in enumerate(got) if g is None and k not in dict(errors)]}")
    return [(k, r, part) for k in range(len(slices)) for r, answer in enumerate(got[k])
            for part in (0, 1) if answer[part] != want[k][part]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", help=".tflite file written by `ondevice-nlp build`")
    p.add_argument("--write-tiny", metavar="PATH", help="only export the untrained tiny model")
    p.add_argument("--mode", choices=("model", "resize"), default="model")
    p.add_argument("--op-resolver", default="default")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args(argv)
    if a.write_tiny:
        write_tiny(a.write_tiny)
        print(f"wrote {a.write_tiny}")
        return 0
    if a.model is None:
        p.error("give a model file (or --write-tiny PATH)")
    if min(a.reps, a.threads, a.rounds, a.batch) < 1:
        p.error("--reps, --threads, --rounds and --batch must be >= 1")
    texts = PLAIN + [t.decode("utf-8", "replace") for _, t in hostile_text.cases(4, 70)]
    cls = _Model if a.mode == "model" else _Resizing
    rng = random.Random(a.seed)
    bad = 0
    for rep in range(a.reps):
        try:
            slices = [[rng.choice(texts) for _ in range(a.batch)] for _ in range(a.threads)]
            found = one_rep(lambda: cls(a.model, a.op_resolver), slices, a.rounds)
        except (OSError, ValueError) as e:  # a missing or corrupt file (ModelFileError is one)
            print(f"error: {e}", file=sys.stderr)
            return 2
        for k, r, part in found:
            print(f"mismatch: rep {rep} thread {k} round {r} "
                  f"{'batch call' if part else 'single-text calls'}", flush=True)
            bad += 1
    print(f"mode {a.mode} op-resolver {a.op_resolver} reps {a.reps} threads {a.threads} "
          f"rounds {a.rounds}: {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
