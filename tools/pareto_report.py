#!/usr/bin/env python3
"""Accuracy versus ``.tflite`` size and versus latency, with the Pareto front marked.

Reads any mix of

* ``metrics.json`` files written by ``ondevice-nlp build`` (accuracy of the
  int8 ``.tflite`` per language under ``"tflite"``, ``model_size_bytes``;
  the model is ``model.tflite`` in the same folder), and
* benchmark JSON files written by ``ondevice-nlp benchmark --json`` (``bytes``,
  ``parameters``, ``macs``, ``latency_ms[threads].p50`` per model path),

joins them on the model file's real path, and writes to ``--out``:

* ``report.md``: one row per model (bytes, parameters, MACs, p50 latency,
  accuracy, whether it is on the size front and on the latency front) and the
  two plots;
* ``accuracy_vs_size.png`` and ``accuracy_vs_latency.png`` (matplotlib):
  models with an accuracy as points, the Pareto front as a step line, models
  without an accuracy (timing baselines such as the random-weight BERT
  encoders of ``tools/make_baseline_tflite.py``) as dotted vertical lines at
  their size / latency.

A model is on the Pareto front of (x, accuracy) when no other model is at
least as small (fast) and at least as accurate, and strictly better in one
of the two.

Accuracy: ``--metric`` (exact_match, intent_accuracy, slot_f1) of the
``.tflite`` in percent, for ``--language`` (a code, or ``avg``: the mean over
the file's languages weighted by their number of utterances ``n``).
``--reference LABEL:BYTES:ACCURACY`` adds a published figure (no latency).

Usage::

    python tools/pareto_report.py runs/*/metrics.json runs/bench.json --out runs/pareto
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

METRICS = ("exact_match", "intent_accuracy", "slot_f1")


class ReportError(ValueError):
    """An input file that is missing, not JSON, or of neither known kind."""


@dataclass
class Entry:
    """One model: what is known of it (None when no input file said)."""

    key: str
    label: str
    bytes: int | None = None
    parameters: int | None = None
    macs: int | None = None
    latency_ms: float | None = None
    accuracy: float | None = None          # percent
    sources: list = field(default_factory=list)
    on_size_front: bool = False
    on_latency_front: bool = False


def _real(path: str, base: Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        p = base / p
    return os.path.realpath(p)


def _accuracy(tflite: dict, metric: str, language: str, where: str) -> float | None:
    if not isinstance(tflite, dict) or not tflite:
        return None
    if language != "avg":
        if language not in tflite:
            raise ReportError(f"{where}: no language {language!r} under 'tflite' "
                              f"(has {sorted(tflite)})")
        return 100.0 * float(tflite[language][metric])
    total = sum(int(v.get("n", 1)) for v in tflite.values())
    return 100.0 * sum(float(v[metric]) * int(v.get("n", 1)) for v in tflite.values()) / total


def _label(model_path: str) -> str:
    p = Path(model_path)
    return p.parent.name if p.name == "model.tflite" else p.stem


def load(files, metric: str = "exact_match", language: str = "avg",
         threads: str = "1") -> list[Entry]:
    """Entries joined from metrics.json and benchmark JSON files.

    Raises:
      ReportError: unreadable file, invalid JSON, unknown kind, bad language
        (the message names the file).
    """
    if metric not in METRICS:
        raise ReportError(f"unknown metric {metric!r}; choose from {METRICS}")
    entries: dict[str, Entry] = {}

    def entry(key: str) -> Entry:
        return entries.setdefault(key, Entry(key=key, label=_label(key)))

    for f in files:
        path = Path(f)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ReportError(f"{f}: cannot read ({e.strerror})") from None
        except ValueError as e:
            raise ReportError(f"{f}: not valid JSON ({e})") from None
        if isinstance(data, dict) and isinstance(data.get("models"), list):  # benchmark JSON
            for i, m in enumerate(data["models"]):
                try:
                    # realpath: written by `ondevice-nlp benchmark`; path: as the user typed it
                    e = entry(m.get("realpath") or _real(m["path"], Path.cwd()))
                    e.bytes, e.parameters, e.macs = int(m["bytes"]), m.get("parameters"), m.get("macs")
                    lat = m.get("latency_ms", {}).get(str(threads))
                    e.latency_ms = None if lat is None else float(lat["p50"])
                except (KeyError, TypeError, ValueError) as err:
                    raise ReportError(f"{f}: models[{i}] lacks a field ({err!r})") from None
                e.sources.append(str(f))
        elif isinstance(data, dict) and "tflite" in data:  # metrics.json of `build`
            e = entry(_real(str(path.parent / "model.tflite"), Path(".")))
            try:
                e.accuracy = _accuracy(data["tflite"], metric, language, str(f))
            except (KeyError, TypeError, ValueError) as err:
                raise ReportError(f"{f}: 'tflite' lacks {metric} ({err!r})") from None
            if e.bytes is None and data.get("model_size_bytes") is not None:
                e.bytes = int(data["model_size_bytes"])
            if e.parameters is None:
                e.parameters = data.get("parameters")
            e.sources.append(str(f))
        else:
            raise ReportError(f"{f}: neither a metrics.json of `ondevice-nlp build` (no 'tflite') "
                              "nor a benchmark JSON (no 'models')")
    return list(entries.values())


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (x, y) points, minimise x and maximise y: True where not dominated."""
    out = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y)
                        for j, (x2, y2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def mark_fronts(entries: list[Entry]) -> None:
    """Set ``on_size_front`` / ``on_latency_front`` of entries with an accuracy."""
    for attr, flag in (("bytes", "on_size_front"), ("latency_ms", "on_latency_front")):
        pts = [e for e in entries if e.accuracy is not None and getattr(e, attr) is not None]
        for e, on in zip(pts, pareto_front([(getattr(e, attr), e.accuracy) for e in pts])):
            setattr(e, flag, on)


def plot(entries: list[Entry], attr: str, xlabel: str, ylabel: str, path: Path,
         log_x: bool = True) -> None:
    """One scatter plot with the Pareto front as a step line (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flag = "on_size_front" if attr == "bytes" else "on_latency_front"
    scale = 1 / 2**20 if attr == "bytes" else 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    pts = [e for e in entries if e.accuracy is not None and getattr(e, attr) is not None]
    for e in pts:
        x = getattr(e, attr) * scale
        on = getattr(e, flag)
        ax.scatter([x], [e.accuracy], s=50 if on else 30, marker="o" if on else "x",
                   color="tab:red" if on else "tab:gray", zorder=3)
        ax.annotate(e.label, (x, e.accuracy), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    front = sorted((getattr(e, attr) * scale, e.accuracy) for e in pts if getattr(e, flag))
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red",
                alpha=0.6, label="Pareto front")
    for e in entries:
        if e.accuracy is None and getattr(e, attr) is not None:
            x = getattr(e, attr) * scale
            ax.axvline(x, linestyle=":", color="tab:blue", alpha=0.7)
            ax.annotate(f"{e.label} (no accuracy)", (x, 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=7, color="tab:blue", xytext=(3, 0),
                        textcoords="offset points")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if front:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(entries: list[Entry], metric: str, language: str, threads: str,
             plots: list[str]) -> str:
    """report.md: the table and the plots."""
    name = f"{metric.replace('_', ' ')} ({language}, %)"
    lines = [f"# Accuracy vs size and latency\n",
             f"Accuracy: int8 `.tflite` {name}. Latency: p50 ms per utterance, batch 1, "
             f"{threads} thread(s), from `ondevice-nlp benchmark`. "
             "**front** = on the Pareto front (no other model both at least as small/fast "
             "and at least as accurate).\n",
             f"| model | bytes | parameters | MACs | p50 ms | {name} | size front | latency front |",
             "|---|---|---|---|---|---|---|---|"]
    for e in sorted(entries, key=lambda e: (e.bytes is None, e.bytes or 0)):
        lines.append(
            f"| {e.label} | {_fmt(e.bytes, ',')} | {_fmt(e.parameters, ',')} | "
            f"{_fmt(e.macs, ',')} | {_fmt(e.latency_ms, '.3f')} | {_fmt(e.accuracy, '.1f')} | "
            f"{'**front**' if e.on_size_front else ''} | "
            f"{'**front**' if e.on_latency_front else ''} |")
    lines.append("")
    lines += [f"![{p}]({p})" for p in plots]
    lines.append("\nSources: " + ", ".join(sorted({s for e in entries for s in e.sources})))
    return "\n".join(lines) + "\n"


def report(files, out: str, metric: str = "exact_match", language: str = "avg",
           threads: str = "1", references=()) -> list[Entry]:
    """Write ``out/report.md`` and the PNG plots; returns the entries.

    Raises:
      ReportError: bad input (see ``load``) or a malformed ``references`` item.
    """
    entries = load(files, metric, language, threads)
    for ref in references:
        try:
            label, nbytes, acc = ref.rsplit(":", 2)
            entries.append(Entry(key=f"reference:{label}", label=label, bytes=int(nbytes),
                                 accuracy=float(acc), sources=["--reference"]))
        except ValueError:
            raise ReportError(f"--reference {ref!r}: expected LABEL:BYTES:ACCURACY") from None
    if not entries:
        raise ReportError("no models in the inputs")
    mark_fronts(entries)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ylabel = f"{metric.replace('_', ' ')} ({language}), %"
    plots = []
    if any(e.bytes is not None for e in entries):
        plot(entries, "bytes", ".tflite size (MiB, log scale)", ylabel,
             out_dir / "accuracy_vs_size.png")
        plots.append("accuracy_vs_size.png")
    if any(e.latency_ms is not None for e in entries):
        plot(entries, "latency_ms", f"p50 latency per utterance (ms, {threads} thread(s), log)",
             ylabel, out_dir / "accuracy_vs_latency.png")
        plots.append("accuracy_vs_latency.png")
    (out_dir / "report.md").write_text(markdown(entries, metric, language, threads, plots),
                                       encoding="utf-8")
    return entries


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="metrics.json and benchmark JSON files")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metric", default="exact_match", choices=METRICS)
    p.add_argument("--language", default="avg", help="language code or avg (default)")
    p.add_argument("--threads", default="1", help="latency of this thread count (default 1)")
    p.add_argument("--reference", action="append", default=[],
                   help="LABEL:BYTES:ACCURACY, a published figure without latency")
    args = p.parse_args(argv)
    try:
        entries = report(args.files, args.out, args.metric, args.language, args.threads,
                         args.reference)
    except ReportError as e:
        print(f"pareto_report: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}/report.md: {len(entries)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
