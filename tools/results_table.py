#!/usr/bin/env python3
"""Markdown results tables from the ``metrics.json`` of one or more ``ondevice-nlp build`` runs.

Each run folder (or its ``metrics.json``) gives, per language, the test
metrics of the float Keras model (``"keras"``), the QAT model
(``"keras_qat"``) and the int8 ``.tflite`` (``"tflite"``): fractions in
[0, 1] with the number of utterances ``n``. Runs are merged by language, so
one model per language (``make mtop-each-crf``) and one model for all
languages (``make mtop-all-crf``) give the same kind of table; a language
present in two runs is an error. The ``"average"`` entry that ``build``
writes for several languages is left out and recomputed over all the runs.

Two tables, percentages with one decimal:

* ``--table languages`` (default): one row per language (run, n, Keras EM /
  intent accuracy / slot F1, QAT EM, ``.tflite`` EM / intent accuracy / slot
  F1, ``.tflite`` - float EM, ``.tflite`` bytes) and an ``average`` row;
* ``--table row``: one summary row (``.tflite`` EM per language in
  ``--languages`` order, average EM, intent accuracy and slot F1, float
  average EM, ``.tflite`` - float, parameters, bytes), as in the README's
  "every model" tables.

Averages are the unweighted mean over the languages, as in the published
MTOP table (reference-notes); the ``n`` of the average row is the sum. With
several runs, bytes and parameters are per model: the row shows each run's
figure joined by " / " when they differ (``max`` with ``--table row``).

Usage::

    python tools/results_table.py runs/mtop-en-crf runs/mtop-es-crf ... [--table row]

Raises ``ResultsError`` (exit status 2, message naming the file) on a missing
or malformed ``metrics.json`` or a language in two runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ondevice_nlp.pipeline import _average

KINDS = ("keras", "keras_qat", "tflite")
METRICS = ("exact_match", "intent_accuracy", "slot_f1")


class ResultsError(ValueError):
    """A run folder without a readable ``metrics.json``, or runs that clash."""


def load_run(path: str) -> dict:
    """The parsed ``metrics.json`` of a run folder (or of that file itself).

    Raises:
        ResultsError: the file is missing, not JSON, or lacks a kind's per-language metrics.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.json"
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{p}: not a readable JSON file ({e})") from None
    if not isinstance(m, dict):
        raise ResultsError(f"{p}: expected a JSON object")
    for kind in KINDS:
        per_lang = m.get(kind)
        if not isinstance(per_lang, dict) or not per_lang:
            raise ResultsError(f"{p}: field {kind!r} missing or empty")
        for lang, v in per_lang.items():
            for k in (*METRICS, "n"):
                if not isinstance(v, dict) or not isinstance(v.get(k), (int, float)):
                    raise ResultsError(f"{p}: field {kind}.{lang}.{k} missing or not a number")
    m["_path"] = str(p)
    return m


def merge(runs: list[dict]) -> dict[str, tuple[dict, dict]]:
    """Language -> (its run's metrics, per-kind metrics of that language), in run order.

    Raises:
        ResultsError: a language appears in two runs.
    """
    out: dict[str, tuple[dict, dict]] = {}
    for run in runs:
        for lang in run["tflite"]:
            if lang == "average":  # build's own mean over the run's languages
                continue
            if lang in out:
                raise ResultsError(f"{run['_path']}: language {lang!r} is also in "
                                   f"{out[lang][0]['_path']}")
            out[lang] = (run, {kind: run[kind].get(lang) for kind in KINDS})
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _diff(x: float) -> str:
    return f"{100 * x:+.2f}"


def _averages(per_lang: list[dict]) -> dict[str, dict]:
    """Kind -> build's ``_average`` (unweighted mean of the metrics, summed n) over the rows."""
    return {kind: _average({i: r[kind] for i, r in enumerate(per_lang)}) for kind in KINDS}


def _joined(values) -> str:
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return " / ".join(f"{v:,}" if isinstance(v, int) else "-" for v in seen)


def language_table(merged: dict[str, tuple[dict, dict]]) -> str:
    """One row per language and an average row (markdown)."""
    head = ("| language | run | n | Keras EM | Keras intent acc | Keras slot F1 | QAT EM | "
            "**TFLite EM** | TFLite intent acc | TFLite slot F1 | TFLite - float | "
            "`.tflite` bytes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for lang, (run, r) in merged.items():
        k, q, t = r["keras"], r["keras_qat"], r["tflite"]
        run_name = Path(run["_path"]).parent.name
        size = run.get("model_size_bytes")
        lines.append(
            f"| {lang} | {run_name} | {t['n']} | {_pct(k['exact_match'])} | "
            f"{_pct(k['intent_accuracy'])} | {_pct(k['slot_f1'])} | {_pct(q['exact_match'])} | "
            f"**{_pct(t['exact_match'])}** | {_pct(t['intent_accuracy'])} | "
            f"{_pct(t['slot_f1'])} | {_diff(t['exact_match'] - k['exact_match'])} | "
            f"{_joined([size])} |")
    k, q, t = (_averages([r for _, r in merged.values()])[kind] for kind in KINDS)
    sizes = _joined([run.get("model_size_bytes") for run, _ in merged.values()])
    lines.append(
        f"| average | | {t['n']} | {_pct(k['exact_match'])} | "
        f"{_pct(k['intent_accuracy'])} | {_pct(k['slot_f1'])} | "
        f"{_pct(q['exact_match'])} | **{_pct(t['exact_match'])}** | "
        f"{_pct(t['intent_accuracy'])} | {_pct(t['slot_f1'])} | "
        f"{_diff(t['exact_match'] - k['exact_match'])} | {sizes} |")
    return "\n".join(lines)


def summary_row(merged: dict[str, tuple[dict, dict]], languages: list[str], label: str) -> str:
    """One markdown row: label | parameters | bytes | EM per language | averages (see module doc).

    Raises:
        ResultsError: a language of ``languages`` is in none of the runs.
    """
    missing = [lang for lang in languages if lang not in merged]
    if missing:
        raise ResultsError(f"language(s) {', '.join(missing)} in none of the runs")
    rs = [merged[lang][1] for lang in languages]
    runs = [merged[lang][0] for lang in languages]
    params = max((r.get("parameters") or 0) for r in runs)
    size = max((r.get("model_size_bytes") or 0) for r in runs)

    avg = _averages(rs)
    k, t = avg["keras"], avg["tflite"]
    ems = " | ".join(_pct(r["tflite"]["exact_match"]) for r in rs)
    return (f"| {label} | {params:,} | {size:,} | {ems} | **{_pct(t['exact_match'])}** | "
            f"{_pct(t['intent_accuracy'])} | {_pct(t['slot_f1'])} | {_pct(k['exact_match'])} | "
            f"{_diff(t['exact_match'] - k['exact_match'])} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders (or their metrics.json)")
    ap.add_argument("--table", choices=("languages", "row"), default="languages")
    ap.add_argument("--languages", default=None,
                    help="comma-separated order for --table row (default: as found)")
    ap.add_argument("--label", default="model", help="first cell of --table row")
    a = ap.parse_args(argv)
    try:
        merged = merge([load_run(p) for p in a.runs])
        if a.table == "languages":
            print(language_table(merged))
        else:
            langs = a.languages.split(",") if a.languages else list(merged)
            print(summary_row(merged, langs, a.label))
    except ResultsError as e:
        print(f"results_table: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
