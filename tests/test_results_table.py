"""tools/results_table.py on synthetic metrics.json files."""

import json

import pytest

from tools import results_table as rt


def _run(folder, per_lang, size, params=1000):
    """A run folder whose keras / QAT / tflite EM per language are given (fractions)."""
    folder.mkdir(parents=True)
    m = {"model_size_bytes": size, "parameters": params}
    for i, kind in enumerate(("keras", "keras_qat", "tflite")):
        m[kind] = {lang: {"exact_match": em[i], "intent_accuracy": 0.9, "slot_f1": 0.8, "n": n}
                   for lang, (em, n) in per_lang.items()}
        if len(per_lang) > 1:  # as build writes it: must not count as a language
            m[kind]["average"] = {"exact_match": 0.0, "intent_accuracy": 0.0, "slot_f1": 0.0,
                                  "n": 0}
    (folder / "metrics.json").write_text(json.dumps(m))
    return str(folder)


def test_one_model_per_language_merges_into_one_table(tmp_path, capsys):
    en = _run(tmp_path / "en", {"en": ((0.80, 0.79, 0.785), 100)}, 1_100_000)
    th = _run(tmp_path / "th", {"th": ((0.60, 0.61, 0.615), 300)}, 1_200_000, params=2000)
    assert rt.main([en, th]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 2 + 2 + 1  # header, rule, two languages, average
    assert rows[2].startswith("| en | en | 100 | 80.0 |") and "**78.5**" in rows[2]
    assert "-1.50 | 1,100,000 |" in rows[2]
    assert "+1.50 | 1,200,000 |" in rows[3]
    # unweighted mean, as the published table; n summed; both sizes shown
    assert rows[4] == ("| average | | 400 | 70.0 | 90.0 | 80.0 | 70.0 | **70.0** | 90.0 | 80.0 "
                       "| +0.00 | 1,100,000 / 1,200,000 |")
    assert rt.main([en, th, "--table", "row", "--languages", "th,en", "--label", "x"]) == 0
    assert capsys.readouterr().out.strip() == (
        "| x | 2,000 | 1,200,000 | 61.5 | 78.5 | **70.0** | 90.0 | 80.0 | 70.0 | +0.00 |")


def test_one_model_for_all_languages_skips_builds_average(tmp_path, capsys):
    both = _run(tmp_path / "all", {"en": ((0.7, 0.7, 0.7), 10), "de": ((0.5, 0.5, 0.4), 30)},
                1_000_000)
    assert rt.main([both]) == 0
    out = capsys.readouterr().out
    assert out.count("| average |") == 1 and "| 40 | 60.0 |" in out and "**55.0**" in out


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    en = _run(tmp_path / "en", {"en": ((0.8, 0.8, 0.8), 10)}, 1)
    again = _run(tmp_path / "en2", {"en": ((0.7, 0.7, 0.7), 10)}, 1)
    assert rt.main([en, again]) == 2
    assert "language 'en' is also in" in capsys.readouterr().err
    assert rt.main([str(tmp_path / "nope")]) == 2
    assert "nope: no such file" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{not json")
    assert rt.main([str(tmp_path / "bad")]) == 2
    assert "not a readable JSON file" in capsys.readouterr().err
    m = json.loads((tmp_path / "en" / "metrics.json").read_text())
    del m["keras_qat"]["en"]["exact_match"]
    (tmp_path / "en" / "metrics.json").write_text(json.dumps(m))
    assert rt.main([en]) == 2
    assert "field keras_qat.en.exact_match missing" in capsys.readouterr().err
    assert rt.main([again, "--table", "row", "--languages", "en,fr"]) == 2
    assert "language(s) fr in none of the runs" in capsys.readouterr().err
    with pytest.raises(rt.ResultsError):
        rt.load_run(str(tmp_path / "bad"))
