"""Command line: ``ondevice-nlp build | teacher | evaluate | predict | benchmark``.

Errors the user can fix (missing files, malformed data, corrupt models) end
with a one-line message on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

from .augment import MAX_RATE

DEFAULT_DATA_DIR = os.environ.get("ONDEVICE_NLP_DATA", "../shared/data")


def _langs(s: str) -> list:
    out = [x.strip() for x in s.split(",") if x.strip()]
    if not out:
        raise argparse.ArgumentTypeError("give at least one language, e.g. en or en,es")
    return out


def _data_dir(dataset: str, data_dir: str | None) -> str:
    if data_dir:
        return data_dir
    return os.path.join(DEFAULT_DATA_DIR, dataset)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ondevice-nlp", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="train, QAT, export OUT/model.tflite and evaluate it")
    b.add_argument("--dataset", required=True, choices=["mtop", "massive", "snips"])
    b.add_argument("--data-dir", help="dataset folder (default $ONDEVICE_NLP_DATA/<dataset> "
                                      "or ../shared/data/<dataset>)")
    b.add_argument("--languages", type=_langs, default=["en"], help="comma list, e.g. en,es,fr")
    b.add_argument("--model", default="pnlp_mixer",
                   choices=["pnlp_mixer", "pqrnn", "bilstm", "transformer"],
                   help="bilstm and transformer: the baselines over hashed token ids")
    b.add_argument("--size", help="named size; pnlp_mixer: xsmall, base (default), base-w3 (window 3, F=432: Thai), base-ng4 (letter n-grams: Thai), xlarge (teacher member), tiny (tests); "
                                  "pqrnn: 1mb (default), 2mb, tiny (tests); bilstm, "
                                  "transformer: 1mb (default), tiny (tests)")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--max-tokens", type=int, help="sequence length S (default from the size)")
    b.add_argument("--epochs", type=int, default=40, help="float training epochs (max; cosine decay over them)")
    b.add_argument("--qat-epochs", type=int, default=2, help="quantization-aware epochs (max)")
    b.add_argument("--batch-size", type=int, default=128)
    b.add_argument("--lr", type=float, default=2e-3)
    b.add_argument("--qat-lr", type=float, default=2e-4)
    b.add_argument("--weight-decay", type=float, default=0.05,
                   help="AdamW decoupled weight decay (float and QAT phases)")
    b.add_argument("--dropout", type=float,
                   help="dropout on residual branches and projection features (default: the size's)")
    b.add_argument("--token-dropout", type=float, metavar="P",
                   help="pnlp_mixer: word dropout, all features of a token zeroed with "
                        "probability P in training (default: the size's, 0 for base)")
    b.add_argument("--patience", type=int, default=6, help="early-stopping patience (epochs)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--max-train-examples", type=int, help="subsample training data per language")
    b.add_argument("--max-eval-examples", type=int, help="subsample eval/test per language")
    b.add_argument("--skip-bad-lines", action="store_true",
                   help="skip and count malformed dataset lines instead of failing")
    b.add_argument("--augment-slots", type=float, default=0.0, metavar="RATE",
                   help="slot-value substitution: copies of the training utterances with slots in "
                        "which each slot value is another training value of the same type; RATE "
                        f"copies per utterance, 0-{MAX_RATE:g} (up to 1, the share of utterances that get "
                        "one; 2, two each)")
    b.add_argument("--crf", action=argparse.BooleanOptionalAction, default=True,
                   help="train the slot tags with a linear-chain CRF loss and decode with its "
                        "learned transitions (in the .tflite metadata); the network is unchanged. "
                        "On by default; --no-crf trains per-token softmax tags and decodes them "
                        "with the fixed BIO constraints only")
    b.add_argument("--ema", type=float, default=0.0, metavar="MOMENTUM",
                   help="float phase: keep an exponential moving average of the weights "
                        "(e.g. 0.998 per step) and score, keep and export it instead of the raw "
                        "weights; 0 (default) turns it off")
    b.add_argument("--resume", action="store_true",
                   help="reuse OUT's completed float phase (checkpoints/float.done.json) and "
                        "start at quantization-aware training; with QAT complete as well "
                        "(checkpoints/qat.done.json), export and evaluate only")
    b.add_argument("--words", metavar="FILE",
                   help="word list (UTF-8, one word per line) of a script written without "
                        "spaces, e.g. Thai: the projection joins their letters into one token "
                        "by maximal matching (config version 4; the words travel in the "
                        "model). tools/thai_words.py --write-words makes one from MTOP")
    b.add_argument("--init-from", metavar="RUN",
                   help="start float training from the best float weights of an earlier "
                        "build folder RUN of the same --model, --size and projection (e.g. the "
                        "six-language model for one language); output heads and CRF "
                        "transitions are matched label by label (warm_start.py)")
    b.add_argument("--teacher", metavar="T",
                   help="teacher folder (from `ondevice-nlp teacher`): train on hard labels "
                        "plus its soft targets (knowledge distillation)")
    b.add_argument("--distill-temperature", type=float, default=2.0,
                   help="softmax temperature of the distillation term (with --teacher)")
    b.add_argument("--distill-weight", type=float, default=0.5,
                   help="weight w of the distillation term: (1-w) CE + w T^2 KL (with --teacher)")

    t = sub.add_parser("teacher", help="make a teacher (train a large float model, or average "
                                       "finished build runs) and write its soft targets for "
                                       "the training set into OUT")
    t.add_argument("--dataset", required=True, choices=["mtop", "massive", "snips"])
    t.add_argument("--data-dir")
    t.add_argument("--languages", type=_langs, default=["en"])
    t.add_argument("--out", required=True, help="teacher folder (teacher.json, soft_targets.npz)")
    t.add_argument("--teacher-model", default="pnlp_mixer",
                   choices=["pnlp_mixer", "pqrnn", "hub", "ensemble"],
                   help="pnlp_mixer (size teacher: ~10 M parameters), pqrnn (~15 M), hub: "
                        "a pre-trained keras-hub encoder from --preset (ondevice_nlp/hub_teacher.py)"
                        ", or ensemble: the float models of finished build runs (--members), "
                        "averaged (ondevice_nlp/ensemble_teacher.py; trains nothing)")
    t.add_argument("--members", type=lambda s: [x for x in s.split(",") if x],
                   help="--teacher-model ensemble: comma-separated `ondevice-nlp build` output "
                        "folders trained on the same --dataset and --languages")
    t.add_argument("--size", default="teacher", help="named size (default teacher; tiny: tests)")
    t.add_argument("--preset", help="--teacher-model hub: local keras-hub preset folder "
                                    "(e.g. a downloaded bert_multi_cased or xlm_roberta_base)")
    t.add_argument("--hub-tokenizer", help="--teacher-model hub: a Hugging Face tokenizers JSON "
                                           "file (default: PRESET/assets/tokenizer/vocabulary.txt"
                                           " as WordPiece)")
    t.add_argument("--epochs", type=int, default=6,
                   help="training epochs (max; cosine decay over them, best eval epoch kept)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, help="peak learning rate (default 1e-3; hub: 5e-5)")
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument("--dropout", type=float)
    t.add_argument("--patience", type=int, default=3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-train-examples", type=int)
    t.add_argument("--max-eval-examples", type=int)
    t.add_argument("--skip-bad-lines", action="store_true")
    t.add_argument("--words", metavar="FILE",
                   help="--teacher-model pnlp_mixer, pqrnn or hub: the word list of `build "
                        "--words`, so the teacher's soft targets are per word, as the student "
                        "reads (an ensemble's members carry their own lists)")
    t.add_argument("--augment-slots", type=float, default=0.0, metavar="RATE",
                   help="--teacher-model ensemble: also write soft targets for the slot-substituted "
                        "copies that `build --augment-slots RATE` (same --seed) trains on, so the "
                        "student distils on them too")

    e = sub.add_parser("evaluate", help="score a .tflite on a dataset split; prints JSON")
    e.add_argument("model_path")
    e.add_argument("--dataset", required=True, choices=["mtop", "massive", "snips"])
    e.add_argument("--data-dir")
    e.add_argument("--split", default="test", choices=["train", "eval", "test"])
    e.add_argument("--languages", type=_langs, help="default: the model's training languages")
    e.add_argument("--skip-bad-lines", action="store_true")
    e.add_argument("--decoding", default="joint", choices=["joint", "viterbi", "argmax"],
                   help="slot decoding: joint intent + constrained Viterbi (default, as "
                        "predict), constrained Viterbi with the argmax intent, or the "
                        "per-token argmax tags (an ablation; see README 'Slot decoding')")
    e.add_argument("--errors", action="store_true",
                   help="also count the kinds of error per language (intent, slot boundaries, "
                        "slot type, missed, spurious; metrics.error_breakdown) and the "
                        "utterances longer than the model's S tokens (export.truncation_counts)")
    _op_resolver_arg(e)

    r = sub.add_parser("predict", help="intent and slots of one text; prints JSON")
    r.add_argument("model_path")
    r.add_argument("text")
    _op_resolver_arg(r)

    m = sub.add_parser("benchmark", help="size, parameters, MACs, latency, memory of .tflite "
                                         "files (several: interleaved comparison)")
    m.add_argument("model_paths", nargs="+", metavar="MODEL.tflite")
    m.add_argument("--threads", type=_ints, default=[1, 4], help="comma list (default 1,4)")
    m.add_argument("--texts", help="UTF-8 file, one utterance per line (default: built-in "
                                   "sample of several scripts)")
    m.add_argument("--dataset", choices=["mtop", "massive", "snips"],
                   help="take the utterances from a dataset split instead")
    m.add_argument("--data-dir")
    m.add_argument("--languages", type=_langs, default=["en"])
    m.add_argument("--split", default="test", choices=["train", "eval", "test"])
    m.add_argument("--runs", type=int, default=200, help="timed runs per model and thread count")
    m.add_argument("--warmup", type=int, default=20, help="untimed rounds first")
    m.add_argument("--no-memory", action="store_true", help="skip the RSS subprocesses")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _op_resolver_arg(m)
    m.add_argument("--markdown", action="store_true", help="print a markdown table")
    return p


def _op_resolver_arg(p: argparse.ArgumentParser) -> None:
    from .ops import OP_RESOLVERS
    p.add_argument("--op-resolver", default="default", choices=OP_RESOLVERS,
                   help="TFLite kernels: default (optimized, XNNPACK delegate), no-delegates "
                        "(optimized, no XNNPACK), reference (portable reference kernels: slower, "
                        "same int8 outputs on x86 and aarch64)")


def _ints(s: str) -> list:
    try:
        out = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {s!r}")
    return out


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    # basicConfig does nothing when the host (pytest, an app) already configured logging:
    # our progress lines must still reach OUT/build.log.
    logging.getLogger("ondevice_nlp").setLevel(logging.INFO)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .data.example import DataError
    from .tflite_model import ModelFileError
    try:
        if args.command == "build":
            return _build(args)
        if args.command == "teacher":
            return _teacher(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "benchmark":
            return _benchmark(args)
        return _predict(args)
    except (FileNotFoundError, DataError, ModelFileError, ValueError) as e:
        message = " ".join(str(e).splitlines())  # one line, whatever the runtime said
        print(f"ondevice-nlp {args.command}: error: {message}", file=sys.stderr)
        return 2


def _build(args) -> int:
    from .pipeline import BuildArgs, build

    with _log_to(args.out, "build.log"):
        build(BuildArgs(
            dataset=args.dataset, data_dir=_data_dir(args.dataset, args.data_dir),
            languages=args.languages, out=args.out, model=args.model, size=args.size,
            max_tokens=args.max_tokens, epochs=args.epochs, qat_epochs=args.qat_epochs,
            batch_size=args.batch_size, lr=args.lr, qat_lr=args.qat_lr,
            weight_decay=args.weight_decay, dropout=args.dropout,
            token_dropout=args.token_dropout, patience=args.patience,
            seed=args.seed, max_train_examples=args.max_train_examples,
            max_eval_examples=args.max_eval_examples, skip_bad_lines=args.skip_bad_lines,
            resume=args.resume, init_from=args.init_from, teacher=args.teacher,
            distill_temperature=args.distill_temperature, distill_weight=args.distill_weight,
            augment_slots=args.augment_slots, crf=args.crf, ema=args.ema, words=args.words))
    return 0


@contextlib.contextmanager
def _log_to(folder: str, name: str):
    """Copy log records to ``folder/name`` while the block runs.

    The handler is removed afterwards, so a process that runs several builds
    (tests, tools/make_timing_models.py) writes each one's lines to its own log.
    """
    os.makedirs(folder, exist_ok=True)
    fh = logging.FileHandler(os.path.join(folder, name), encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(fh)
    try:
        yield
    finally:
        root.removeHandler(fh)
        fh.close()


def _teacher(args) -> int:
    from . import distill

    a = distill.TeacherArgs(
        dataset=args.dataset, data_dir=_data_dir(args.dataset, args.data_dir),
        languages=args.languages, out=args.out,
        model=args.teacher_model, size=args.size, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        dropout=args.dropout, patience=args.patience, seed=args.seed,
        max_train_examples=args.max_train_examples, max_eval_examples=args.max_eval_examples,
        skip_bad_lines=args.skip_bad_lines, augment_slots=args.augment_slots, words=args.words)
    if args.words and args.teacher_model == "ensemble":
        raise ValueError("teacher --words does not go with --teacher-model ensemble: its "
                         "members carry their own word lists")
    if args.augment_slots and args.teacher_model != "ensemble":
        raise ValueError("teacher --augment-slots works with --teacher-model ensemble only")
    if args.teacher_model == "hub" and not args.preset:
        raise ValueError("--teacher-model hub needs --preset PRESET_DIR")
    if (args.teacher_model == "ensemble") != bool(args.members):
        raise ValueError("--members goes with --teacher-model ensemble, and it needs them")
    with _log_to(args.out, "teacher.log"):
        if args.teacher_model == "ensemble":
            from . import ensemble_teacher
            ensemble_teacher.run_ensemble_teacher(a, args.members)
        elif args.teacher_model == "hub":
            from . import hub_teacher
            hub_teacher.run_hub_teacher(a, args.preset, args.hub_tokenizer)
        else:
            distill.run_teacher(a)
    return 0


def _evaluate(args) -> int:
    from .data import load_dataset
    from .tflite_model import TFLiteModel

    # a bad model fails here, before TensorFlow is imported
    tfl = TFLiteModel(args.model_path, op_resolver=args.op_resolver, decoding=args.decoding)
    from .export import evaluate_tflite
    langs = args.languages or tfl.meta["languages"]
    data = load_dataset(args.dataset, _data_dir(args.dataset, args.data_dir), langs, args.split,
                        skip_bad_lines=args.skip_bad_lines)
    out = {lang: evaluate_tflite(tfl, ex, errors=args.errors) for lang, ex in data.items()}
    print(json.dumps(out, indent=2))
    return 0


def _predict(args) -> int:
    from .tflite_model import TFLiteModel

    tfl = TFLiteModel(args.model_path, op_resolver=args.op_resolver)
    res = tfl.predict(args.text)
    out = {"intent": res["intent"], "slots": res["slots"]}
    line = json.dumps(out, ensure_ascii=False)
    encoding = sys.stdout.encoding or "utf-8"
    try:
        line.encode(encoding)
    except UnicodeEncodeError:  # e.g. invalid UTF-8 in the text (lone surrogates): \u escapes
        line = json.dumps(out)
    print(line)
    return 0


def _benchmark(args) -> int:
    from . import benchmark as B

    if args.texts and args.dataset:
        raise B.BenchmarkError("give --texts or --dataset, not both")
    texts = None
    if args.texts:
        texts = B.read_texts_file(args.texts)
    elif args.dataset:
        from .data import load_dataset
        data = load_dataset(args.dataset, _data_dir(args.dataset, args.data_dir), args.languages,
                            args.split)
        texts = B.sample_texts([e.text for lang in args.languages for e in data[lang]],
                               max(args.runs, 1))
    res = B.benchmark(args.model_paths, threads=args.threads, texts=texts, runs=args.runs,
                      warmup=args.warmup, memory=not args.no_memory,
                      op_resolver=args.op_resolver)
    if args.json:
        print(json.dumps(res, indent=2, ensure_ascii=False))
    elif args.markdown:
        print(B.markdown_table(res))
    else:
        B.print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
