#!/usr/bin/env python3
"""``.tflite`` files of the MTOP-English architectures, for timing only.

Size, MACs, latency and memory depend on the architecture and the head sizes,
not on the weights. This tool writes a synthetic dataset in MTOP's format with
MTOP English's label counts (117 intents, 78 slot types, i.e. 157 BIO tags)
and runs ``ondevice-nlp build`` on it for one float and one QAT epoch, so the
resulting ``OUT/MODEL-SIZE/model.tflite`` (``pnlp-mixer-base``, ``bilstm-1mb``, ...)
has exactly the graph a real
MTOP-en build exports, with meaningless weights (its metrics.json accuracy is
meaningless too: do not feed it to tools/pareto_report.py).

Usage (items are MODEL:SIZE, or a pNLP-Mixer SIZE alone; ``--sizes`` is the older
spelling of pNLP-Mixer sizes)::

    python tools/make_timing_models.py bilstm:1mb transformer:1mb pnlp_mixer:base pqrnn:1mb \
        --out runs/synthetic
    python tools/make_timing_models.py --sizes base,xsmall --out runs/synthetic
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

NUM_INTENTS = 117   # MTOP English train
NUM_SLOT_TYPES = 78  # 1 + 2 * 78 = 157 BIO tags
WORDS = ("set alarm remind me call play music weather tomorrow morning at for the to in on "
         "with please what is my next").split()


def _line(utt: str, intent: str, slots) -> str:
    flat = f"[IN:{intent} " + " ".join(f"[SL:{t} {v} ]" for t, v in slots) + " ]"
    return "\t".join([utt, flat, flat, "test", "en_XX"])


def _example(rng: random.Random, i: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randrange(3, 12))]
    slots = []
    for _ in range(rng.randrange(0, 3)):
        value = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 3)))
        slots.append((f"SLOT_{rng.randrange(NUM_SLOT_TYPES)}", value))
        words += value.split()
    return _line(" ".join(words), f"INTENT_{i % NUM_INTENTS}", slots)


def write_dataset(root: Path, seed: int = 0) -> None:
    """``root/en/{train,eval,test}.txt`` with every intent and slot type in train."""
    rng = random.Random(seed)
    (root / "en").mkdir(parents=True, exist_ok=True)
    train = [_example(rng, i) for i in range(600)]
    train += [_line(f"please set slot{k} value", f"INTENT_{k % NUM_INTENTS}", [(f"SLOT_{k}", "value")])
              for k in range(NUM_SLOT_TYPES)]
    (root / "en" / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    for split in ("eval", "test"):
        rows = [_example(rng, i) for i in range(120)]
        (root / "en" / f"{split}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")


def parse_items(items) -> list[tuple[str, str]]:
    """``MODEL:SIZE`` items (or a pNLP-Mixer ``SIZE``) -> [(model, size)].

    Raises:
      ValueError: an unknown model name (sizes are checked by the build).
    """
    from ondevice_nlp.pipeline import MODELS

    out = []
    for item in items:
        model, _, size = item.rpartition(":")
        model = model or "pnlp_mixer"
        if model not in MODELS or not size:
            raise ValueError(f"bad item {item!r}: expected MODEL:SIZE with MODEL one of "
                             f"{', '.join(MODELS)}")
        out.append((model, size))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("items", nargs="*", help="MODEL:SIZE, e.g. bilstm:1mb transformer:1mb "
                                            "pnlp_mixer:base pqrnn:1mb")
    p.add_argument("--sizes", help="comma list of pNLP-Mixer sizes (default base,xsmall when "
                                   "no item is given)")
    p.add_argument("--out", required=True, help="output folder (one subfolder per model)")
    args = p.parse_args(argv)
    sizes = args.sizes if args.sizes is not None else ("" if args.items else "base,xsmall")
    try:
        todo = parse_items([*args.items, *(s.strip() for s in sizes.split(",") if s.strip())])
    except ValueError as e:
        p.error(str(e))
    from ondevice_nlp import cli

    with tempfile.TemporaryDirectory(prefix="synthetic_mtop.") as d:
        write_dataset(Path(d))
        for model, size in todo:
            name = f"{model.replace('_', '-')}-{size}"
            rc = cli.main(["build", "--dataset", "mtop", "--data-dir", d, "--languages", "en",
                           "--model", model, "--size", size, "--out", os.path.join(args.out, name),
                           "--epochs", "1", "--qat-epochs", "1", "--batch-size", "64",
                           # the CRF changes no op, only the metadata; the README's byte
                           # counts are of files without its transition scores
                           "--no-crf"])
            if rc != 0:
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
