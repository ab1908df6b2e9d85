"""The Makefile's run targets: the commands README quotes, and the distillation chains."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAKEFILE = REPO / "Makefile"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def _make(cwd, *args):
    # BIN points nowhere: a step that is not skipped fails at once instead of training
    return subprocess.run(["make", "-f", str(MAKEFILE), *args, "BIN=/nonexistent-bin"],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def _dry(target):
    p = subprocess.run(["make", "-n", "-f", str(MAKEFILE), target], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_chain_skips_finished_steps_and_stops_at_the_first_failure(tmp_path):
    """mtop-en-best: finished members (metrics.json) and teachers (teacher.json) are skipped;
    the first missing step runs, and its failure stops the chain with a non-zero status."""
    for name, done in (("mtop-en", "metrics.json"), ("mtop-en-aug", "metrics.json"),
                       ("teacher-en-ens-aug", "teacher.json")):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / done).write_text("{}")
    p = _make(tmp_path, "mtop-en-best")
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "== mtop-en: done, skipped" in out and "== mtop-en-aug: done, skipped" in out
    assert "--out runs/mtop-en-crf" in out  # the first missing step was started
    assert "runs/pqrnn-en-crf" not in out  # and nothing after it


# the English chains' shared first steps: the four members, their teacher and its two students
EN4_STEPS = ["mtop-en-crf-bs64", "mtop-en-crf-td10", "mtop-en-aug", "pqrnn-en-crf",
             "teacher-en-ens4-aug2", "mtop-en-crf-kd4-aug2-24"]
EN6_MEMBER_STEPS = EN4_STEPS + ["mtop-en-crf-kd4-aug2-16-bs64"]


def _lang_kd4_steps(lang):
    """One language's chain (mtop-LANG-kd4-best): four members, their teacher, its student."""
    return [f"mtop-{lang}-crf-bs64", f"mtop-{lang}-crf-td10", f"pqrnn-{lang}-crf", f"mtop-{lang}-crf",
            f"teacher-{lang}-ens4-aug3", f"mtop-{lang}-crf-kd4-aug3-24-t1"]


# the Thai word chain's first steps: four members, their teacher and its student
TH_WORDS4_STEPS = ["pqrnn-th-crf-bs32-words", "mtop-th-crf-bs64-words-p40", "mtop-th-crf-bs32-words-p40",
                   "pqrnn-th-crf-bs32-words-seed1", "teacher-th-words4-aug3",
                   "mtop-th-crf-words-kd4-aug3-24-t1"]


@pytest.mark.parametrize("chain,steps", [
    ("massive-all-best", ["massive-all", "massive-pqrnn-all", "massive-bilstm-all",
                          "massive-transformer-all", "massive-teacher-all-ens", "massive-all-crf-kd"]),
    ("massive-all-kd2-best", ["massive-all", "massive-pqrnn-all", "massive-teacher-all-ens2-aug",
                              "massive-all-kd2-aug"]),
    ("mtop-en-kd4-best", EN4_STEPS),
    ("mtop-en-kd6-best", EN6_MEMBER_STEPS + ["teacher-en-ens6-aug3", "mtop-en-crf-kd6-aug3-24-t1"]),
    ("mtop-en-kd6-aug4-best", EN6_MEMBER_STEPS + ["teacher-en-ens6-aug4", "mtop-en-crf-kd6-aug4-24-t1"]),
    ("mtop-en-kd6-seed1-best", EN6_MEMBER_STEPS + ["teacher-en-ens6-aug3-seed1",
                                                   "mtop-en-crf-kd6-aug3-24-t1-seed1"]),
    *((f"mtop-{lang}-kd4-best", _lang_kd4_steps(lang)) for lang in ("es", "th")),
    ("mtop-th-words-kd4-best", TH_WORDS4_STEPS),
    ("mtop-th-words-kd6-seed1-best", TH_WORDS4_STEPS + ["teacher-th-words4-aug3-seed1",
                                                         "mtop-th-crf-words-kd4-aug3-24-t1-seed1",
                                                         "teacher-th-words6-aug3-seed1",
                                                         "mtop-th-crf-words-kd6-aug3-24-t1-seed1"]),
    ("mtop-all-kd2-best", ["mtop-all", "pqrnn-all", "teacher-all-ens2-aug", "mtop-all-kd2-aug"]),
    ("mtop-all-crf-kd2-best", ["mtop-all", "pqrnn-all", "teacher-all-ens2-aug",
                               "mtop-all-crf-kd2-aug"]),
])
def test_chain_with_every_step_done_runs_nothing(tmp_path, chain, steps):
    for name in steps:
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "metrics.json").write_text("{}")
    p = _make(tmp_path, chain)
    assert p.returncode == 0, p.stderr
    assert [ln for ln in p.stdout.splitlines() if ln.startswith("==")] == \
        [f"== {s}: done, skipped" for s in steps]


def test_run_targets_state_the_crf_setting():
    """The CRF is build's default: a target named ...-crf... passes --crf, every other build
    target --no-crf, so each README row's command keeps giving the model it describes."""
    text = MAKEFILE.read_text()
    targets = re.findall(r"^([a-z0-9-]+):\n\t\$\(call run,build", text, re.M)
    assert len(targets) >= 25
    # static pattern rules (one target per language): checked for Thai
    patterns = re.findall(r"^\$\([A-Z0-9_]+\): ([a-z0-9%-]+):\n\t\$\(call run,build", text, re.M)
    assert len(patterns) >= 5
    targets += [t.replace("%", "th") for t in patterns]
    for t in targets:
        cmd = _dry(t)
        assert " build " in cmd, (t, cmd)
        if "crf" in t:
            assert "--crf" in cmd and "--no-crf" not in cmd, (t, cmd)
        else:
            assert "--no-crf" in cmd, (t, cmd)
