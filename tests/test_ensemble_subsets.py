"""tools/ensemble_subsets.py: subset averaging and ranking on synthetic distributions."""

import numpy as np
import pytest

from tools import ensemble_subsets as es

# 4 examples, 3 intents, gold intents 0, 1, 2, 0. Member "a" is sure and right on the first
# two and mildly wrong on the last two, "b" the other way round, "c" confidently wrong everywhere:
# "a" + "b" averaged is right on all four, every subset with "c" is worse.
GOLD = np.array([0, 1, 2, 0])
A = np.array([[.9, .05, .05], [.05, .9, .05], [.3, .4, .3], [.3, .4, .3]])
B = np.array([[.3, .4, .3], [.4, .3, .3], [.05, .05, .9], [.9, .05, .05]])
C = np.array([[0, 1., 0], [1., 0, 0], [1., 0, 0], [0, 0, 1.]])


def _dists():
    tags = lambda v: [np.full((2, 3), v), np.full((1, 3), v), np.full((3, 3), v), np.full((1, 3), v)]
    return {"a": (A, tags(.2)), "b": (B, tags(.4)), "c": (C, tags(.6))}


def _intent_accuracy(dists, combo):
    intents, _ = es.subset_mean(dists, combo)
    return float(np.mean(intents.argmax(1) == GOLD))


def test_subset_mean_is_the_plain_average():
    d = _dists()
    intents, slots = es.subset_mean(d, ("a", "c"))
    np.testing.assert_allclose(intents, (A + C) / 2)
    assert [s.shape for s in slots] == [(2, 3), (1, 3), (3, 3), (1, 3)]
    np.testing.assert_allclose(slots[2], np.full((3, 3), .4))
    np.testing.assert_allclose(es.subset_mean(d, ("b",))[0], B)


def test_rank_finds_the_complementary_pair():
    d = _dists()
    assert _intent_accuracy(d, ("a",)) == 0.5 and _intent_accuracy(d, ("b",)) == 0.5
    ranked = es.rank_subsets(["a", "b", "c"], lambda c: _intent_accuracy(d, c), min_size=1)
    assert len(ranked) == 7  # every non-empty subset once
    assert ranked[0] == (1.0, ("a", "b"))
    assert sorted(c for _, c in ranked) == sorted(
        [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")])
    scores = [s for s, _ in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(len(c) >= 2 for _, c in es.rank_subsets(["a", "b", "c"], lambda c: 0.0)), \
        "min_size defaults to 2"


def test_ties_put_the_smaller_subset_first():
    ranked = es.rank_subsets(["x", "y", "z"], lambda c: 1.0, min_size=1)
    assert [len(c) for _, c in ranked] == [1, 1, 1, 2, 2, 2, 3]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at most 12"):
        es.rank_subsets([str(i) for i in range(13)], lambda c: 0.0)
    with pytest.raises(ValueError, match="--min-size 4"):
        es.rank_subsets(["a", "b", "c"], lambda c: 0.0, min_size=4)
    with pytest.raises(ValueError, match="--min-size 0"):
        es.rank_subsets(["a", "b", "c"], lambda c: 0.0, min_size=0)


def test_command_line_checks_the_bounds_before_loading(tmp_path, capsys):
    """Too many members is a usage error before any member is read (none of these exist)."""
    members = ",".join(str(tmp_path / f"run{i}") for i in range(13))
    with pytest.raises(SystemExit) as e:
        es.main(["--dataset", "mtop", "--data-dir", str(tmp_path), "--languages", "en",
                 "--members", members])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "13 members: at most 12" in err and "run0" not in err
