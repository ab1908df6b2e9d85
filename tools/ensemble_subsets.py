#!/usr/bin/env python3
"""Which finished build runs make the best ensemble teacher?

Loads each run as an ensemble member (``ensemble_teacher.load_members_and_data``:
its float model, checked as the teacher checks it), computes its intent and
per-token tag distributions on the eval and test splits once, then scores the
mean distributions of every subset of at least ``--min-size`` members (decoded
as ``teacher --teacher-model ensemble`` decodes them,
``ensemble_teacher.decode_metrics``). Subsets are ranked by
**eval** exact match (the split a user may choose on); the test exact match is
printed beside it, for information only. The ranking answers two questions
before an hour-long student run: does another member still lift the teacher,
and which of the runs at hand add the most?

Prints a markdown table: each member alone, the ``--top`` subsets by eval exact
match, and all members together. Exact match is the average over languages, in
percent.

Usage: python tools/ensemble_subsets.py --dataset mtop --data-dir ../shared/data/mtop \
           --languages en --members runs/A,runs/B,runs/C [--min-size 2] [--top 10]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

MAX_MEMBERS = 12
"""At most 2**12 - 13 = 4083 subsets (each decoded on the eval split)."""


def subset_mean(dists: dict, combo) -> tuple[np.ndarray, list]:
    """The mean of the members' distributions, as the ensemble teacher averages them.

    Args:
      dists: name -> (float [N, I] intent probabilities, N float arrays [n_i, K]
        of tag probabilities).
      combo: member names (at least one).
    Returns (float [N, I], N float arrays [n_i, K]).
    """
    from ondevice_nlp.ensemble_teacher import mean_distributions

    return mean_distributions(dists[name] for name in combo)


def check_bounds(n_members: int, min_size: int) -> None:
    """The limits on one ranking, checked once for ``rank_subsets`` and the command line.

    Args:
      n_members: how many members are ranked.
      min_size: smallest subset scored.
    Raises:
      ValueError: more than ``MAX_MEMBERS`` members, or min_size outside [1, n_members].
    """
    if n_members > MAX_MEMBERS:
        raise ValueError(f"{n_members} members: at most {MAX_MEMBERS} (2**n subsets are scored)")
    if not 1 <= min_size <= n_members:
        raise ValueError(f"--min-size {min_size}: must be between 1 and the {n_members} members")


def rank_subsets(names: list, score, min_size: int = 2) -> list:
    """Score every subset of ``names`` with at least ``min_size`` members.

    Args:
      names: member names (at most ``MAX_MEMBERS``).
      score: callable(tuple of names) -> float, higher is better.
      min_size: smallest subset scored (1 scores the members alone too).
    Returns [(score, combo)] sorted best first; ties keep the smaller subset first.
    Raises:
      ValueError: from ``check_bounds``.
    """
    check_bounds(len(names), min_size)
    out = []
    for k in range(min_size, len(names) + 1):
        for combo in itertools.combinations(names, k):
            out.append((float(score(combo)), combo))
    out.sort(key=lambda sc: (-sc[0], len(sc[1])))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--languages", required=True, type=lambda s: [x for x in s.split(",") if x])
    p.add_argument("--members", required=True, type=lambda s: [x for x in s.split(",") if x])
    p.add_argument("--min-size", type=int, default=2)
    p.add_argument("--top", type=int, default=10)
    args = p.parse_args(argv)

    from ondevice_nlp import distill
    from ondevice_nlp import ensemble_teacher as et

    try:  # before minutes of loading
        check_bounds(len(args.members), args.min_size)
    except ValueError as e:
        p.error(str(e))
    a = distill.TeacherArgs(dataset=args.dataset, data_dir=args.data_dir,
                            languages=args.languages, out="")
    try:  # the teacher's own checks: same max_tokens, labels equal to the training data's
        loaded, data = et.load_members_and_data(a, args.members)
    except (FileNotFoundError, ValueError) as e:  # DataError, ModelFileError are ValueErrors
        p.error(str(e))
    names = [os.path.basename(os.path.normpath(m.run)) for m in loaded]
    if len(set(names)) != len(names):
        names = [m.run for m in loaded]
    # dists[split][lang][name] = (intent probs, tag probs)
    dists = {split: {lang: {n: et.member_distributions(m, enc) for n, m in zip(names, loaded)}
                     for lang, (_, enc) in getattr(data, attr).items()}
             for split, attr in (("eval", "evals"), ("test", "tests"))}
    del loaded

    @functools.lru_cache(maxsize=None)  # a row printed below reuses its ranking's eval figure
    def em(split, combo) -> float:
        split_data = data.evals if split == "eval" else data.tests
        ems = [et.decode_metrics(ex, enc, data.labels, *subset_mean(dists[split][lang], combo))
               ["exact_match"] for lang, (ex, enc) in split_data.items()]
        return float(np.mean(ems))

    ranked = rank_subsets(names, lambda c: em("eval", c), args.min_size)
    print("| members | n | eval EM | test EM |\n|---|---|---|---|")
    rows = [((n,), "alone") for n in names] if args.min_size > 1 else []
    rows += [(c, f"top {i + 1}") for i, (_, c) in enumerate(ranked[:args.top])]
    if tuple(names) not in [c for c, _ in rows]:
        rows.append((tuple(names), "all"))
    for combo, what in rows:
        print(f"| {what}: {', '.join(combo)} | {len(combo)} | {100 * em('eval', combo):.2f} | "
              f"{100 * em('test', combo):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
