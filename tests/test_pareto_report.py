"""tools/pareto_report.py on synthetic metrics.json and benchmark JSON files."""

import json
from pathlib import Path

import pytest

from tools import pareto_report as pareto


def test_pareto_front_by_hand():
    #        A small/bad   B dominated by A   C big/good   D equal to C but larger
    pts = [(1.0, 60.0), (2.0, 55.0), (4.0, 80.0), (5.0, 80.0), (3.0, 70.0)]
    assert pareto.pareto_front(pts) == [True, False, True, False, True]
    assert pareto.pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [True, True]  # ties: neither dominates


def _metrics(folder: Path, em: dict, size: int):
    folder.mkdir(parents=True)
    tfl = {lang: {"exact_match": v, "intent_accuracy": 0.9, "slot_f1": 0.8, "n": n}
           for lang, (v, n) in em.items()}
    (folder / "metrics.json").write_text(json.dumps({"tflite": tfl, "model_size_bytes": size,
                                                     "parameters": size // 2}))
    (folder / "model.tflite").write_bytes(b"x")
    return folder / "metrics.json"


def test_report_joins_files_and_marks_fronts(tmp_path):
    m_small = _metrics(tmp_path / "runs" / "small", {"en": (0.60, 100), "th": (0.30, 300)}, 500_000)
    m_base = _metrics(tmp_path / "runs" / "base", {"en": (0.70, 100), "th": (0.50, 300)}, 1_200_000)
    m_worse = _metrics(tmp_path / "runs" / "worse", {"en": (0.40, 100), "th": (0.30, 300)}, 2_000_000)
    bench = {"models": [
        {"path": "x", "realpath": str(tmp_path / "runs/small/model.tflite"), "bytes": 500_000, "parameters": 250_000, "macs": 10,
         "latency_ms": {"1": {"p50": 0.9}}},
        {"path": str(tmp_path / "runs/base/model.tflite"), "bytes": 1_200_000, "parameters": 600_000, "macs": 20,
         "latency_ms": {"1": {"p50": 0.5}}},   # faster and better than small: small off the latency front
        {"path": "y", "realpath": str(tmp_path / "runs/worse/model.tflite"), "bytes": 2_000_000, "parameters": 1, "macs": 30,
         "latency_ms": {"1": {"p50": 3.0}}},
        # relative to the current folder
        {"path": "baselines/bert-tiny.tflite", "bytes": 4_400_000, "parameters": 4_363_666,
         "macs": 28_580_480, "latency_ms": {"1": {"p50": 2.3}}}]}
    b = tmp_path / "bench.json"
    b.write_text(json.dumps(bench))
    out = tmp_path / "report"
    entries = pareto.report([m_small, m_base, m_worse, b], str(out),
                            references=["published Base:1200000:81.8"])
    by = {e.label: e for e in entries}
    # n-weighted average over languages: (60*100 + 30*300) / 400 = 37.5
    assert by["small"].accuracy == pytest.approx(37.5)
    assert by["base"].accuracy == pytest.approx(55.0)
    assert by["base"].latency_ms == 0.5 and by["base"].macs == 20
    assert by["bert-tiny"].accuracy is None and by["bert-tiny"].bytes == 4_400_000
    assert [k for k in ("small", "base", "worse", "published Base") if by[k].on_size_front] == \
        ["small", "published Base"]
    assert [k for k in ("small", "base", "worse") if by[k].on_latency_front] == ["base"]
    md = (out / "report.md").read_text()
    assert md.count("| small |") == 1 and "| bert-tiny | 4,400,000 |" in md
    for png in ("accuracy_vs_size.png", "accuracy_vs_latency.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"![{png}]({png})" in md
    # one language instead of the average
    entries = pareto.report([m_small, m_base], str(tmp_path / "en"), language="en",
                            metric="exact_match")
    assert sorted(e.accuracy for e in entries) == pytest.approx([60.0, 70.0])


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert pareto.main([str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.json" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    assert pareto.main([str(other), "--out", str(tmp_path / "o")]) == 2
    assert "other.json: neither" in capsys.readouterr().err
    m = _metrics(tmp_path / "r", {"en": (0.5, 10)}, 100)
    assert pareto.main([str(m), "--out", str(tmp_path / "o"), "--language", "de"]) == 2
    assert "no language 'de'" in capsys.readouterr().err
