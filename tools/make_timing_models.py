#!/usr/bin/env python3
"""pNLP-Mixer ``.tflite`` files of the MTOP-English architecture, for timing only.

Size, MACs, latency and memory depend on the architecture and the head sizes,
not on the weights. This tool writes a synthetic dataset in MTOP's format with
MTOP English's label counts (117 intents, 78 slot types, i.e. 157 BIO tags)
and runs ``ondevice-nlp build`` on it for one float and one QAT epoch, so the
resulting ``OUT/pnlp-mixer-SIZE/model.tflite`` has exactly the graph a real
MTOP-en build exports, with meaningless weights (its metrics.json accuracy is
meaningless too: do not feed it to tools/pareto_report.py).

Usage::

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="base,xsmall", help="comma list of named sizes")
    p.add_argument("--out", required=True, help="output folder (one subfolder per size)")
    args = p.parse_args(argv)
    from ondevice_nlp import cli

    with tempfile.TemporaryDirectory(prefix="synthetic_mtop.") as d:
        write_dataset(Path(d))
        for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
            rc = cli.main(["build", "--dataset", "mtop", "--data-dir", d, "--languages", "en",
                           "--size", size, "--out", os.path.join(args.out, f"pnlp-mixer-{size}"),
                           "--epochs", "1", "--qat-epochs", "1", "--batch-size", "64"])
            if rc != 0:
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
