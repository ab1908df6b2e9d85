"""Dataset readers producing :class:`Example` objects with character-span slots.

Supported corpora (formats documented in each module and in the ``SOURCE.md``
file of each folder under ``shared/data``):

* MTOP (Li et al. 2021): :func:`read_mtop`, folder layout ``<data_dir>/<lang>/{train,eval,test}.txt``
* MASSIVE (FitzGerald et al. 2022): :func:`read_massive`, folder layout ``<data_dir>/<locale>.jsonl``
* SNIPS (Coucke et al. 2018) and other BIO folders: :func:`read_bio`,
  folder layout ``<data_dir>/{train,dev,test}/{seq.in,seq.out,label}``

:func:`load_dataset` picks the right reader and files for a corpus name,
languages and split.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable

from .bio import read_bio
from .example import DataError, Example, ReadReport, Slot
from .massive import read_massive
from .mtop import read_mtop

__all__ = [
    "DataError",
    "Example",
    "ReadReport",
    "Slot",
    "read_mtop",
    "read_massive",
    "read_bio",
    "load_dataset",
    "DATASETS",
    "SPLITS",
]

logger = logging.getLogger(__name__)

DATASETS = ("mtop", "massive", "snips")
SPLITS = ("train", "eval", "test")


def _massive_file(data_dir: str, lang: str) -> str:
    """Find ``<data_dir>/<locale>.jsonl`` for a language code or full locale."""
    if "-" in lang or "_" in lang:
        path = os.path.join(data_dir, lang.replace("_", "-") + ".jsonl")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MASSIVE file for locale {lang!r} not found: {path}")
        return path
    matches = sorted(glob.glob(os.path.join(glob.escape(data_dir), f"{lang}-*.jsonl")))
    if not matches:
        available = sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(data_dir), "*.jsonl")))
        raise FileNotFoundError(
            f"no MASSIVE file for language {lang!r} in {data_dir!r} (expected '{lang}-<REGION>.jsonl'; "
            f"found: {', '.join(available) or 'no .jsonl files'})"
        )
    if len(matches) > 1:
        raise ValueError(
            f"several MASSIVE files for language {lang!r}: "
            f"{', '.join(os.path.basename(m) for m in matches)}; pass a full locale such as 'en-US' instead"
        )
    return matches[0]


def _log_report(report: ReadReport) -> None:
    logger.info("%s", report.summary())
    if report.n_unaligned_slots:
        logger.warning(
            "%s: %d slot(s) could not be aligned to the utterance and were dropped; samples: %s",
            report.path,
            report.n_unaligned_slots,
            report.unaligned_examples,
        )
    if report.n_skipped_bad_lines:
        logger.warning("%s: skipped %d malformed line(s)", report.path, report.n_skipped_bad_lines)


def load_dataset(
    name: str,
    data_dir,
    languages: Iterable[str],
    split: str,
    *,
    skip_bad_lines: bool = False,
) -> dict[str, list[Example]]:
    """Load one split of a corpus for several languages.

    Args:
        name: ``"mtop"``, ``"massive"`` or ``"snips"``.
        data_dir: the corpus folder (``str`` or ``os.PathLike``), e.g. ``shared/data/mtop``.
        languages: language codes, e.g. ``["en", "th"]``. For MASSIVE a full
            locale (``"en-US"``) is also accepted. SNIPS is English only, so
            ``languages`` must be ``["en"]``.
        split: ``"train"``, ``"eval"`` or ``"test"`` (``"dev"`` is accepted as
            an alias of ``"eval"``). MASSIVE and SNIPS call the eval split ``dev``.
        skip_bad_lines: passed to the reader: skip and count malformed lines
            instead of raising :class:`DataError`.

    Files read:
        * mtop: ``<data_dir>/<lang>/<split>.txt`` (read with :func:`read_mtop`);
        * massive: the single ``<data_dir>/<lang>-*.jsonl`` file, rows whose
          ``partition`` is ``train``/``dev``/``test`` (:func:`read_massive`);
        * snips: ``<data_dir>/<train|dev|test>/`` (:func:`read_bio`).

    Returns:
        ``{language: [Example, ...]}`` in the order of ``languages``. Each
        file's :class:`ReadReport` summary is logged (``logging`` at INFO;
        dropped slots and skipped lines at WARNING).

    Raises:
        ValueError: unknown ``name`` or ``split``, empty ``languages``, SNIPS
            with languages other than ``["en"]``, or an ambiguous MASSIVE language.
        FileNotFoundError: a needed file or folder does not exist (the message
            says which path was expected).
        DataError: a file is malformed (see the readers).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    if split == "dev":
        split = "eval"
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if isinstance(languages, str):
        languages = [languages]
    languages = list(languages)
    if not languages:
        raise ValueError("languages must not be empty")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"{name} data folder not found: {data_dir!r}")
    file_split = "dev" if split == "eval" else split
    result: dict[str, list[Example]] = {}
    if name == "snips":
        if languages != ["en"]:
            raise ValueError(f"snips is English only: languages must be ['en'], got {languages!r}")
        split_dir = os.path.join(data_dir, file_split)
        if not os.path.isdir(split_dir):
            raise FileNotFoundError(
                f"snips split folder not found: {split_dir!r} (expected {data_dir}/{{train,dev,test}}/"
                "{seq.in,seq.out,label})"
            )
        examples, report = read_bio(split_dir, language="en", skip_bad_lines=skip_bad_lines)
        _log_report(report)
        result["en"] = examples
        return result
    for lang in languages:
        if name == "mtop":
            path = os.path.join(data_dir, lang, f"{split}.txt")
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"MTOP file not found: {path!r} (expected {data_dir}/<lang>/{{train,eval,test}}.txt)"
                )
            examples, report = read_mtop(path, skip_bad_lines=skip_bad_lines)
        else:
            path = _massive_file(data_dir, lang)
            examples, report = read_massive(path, partition=file_split, skip_bad_lines=skip_bad_lines)
        _log_report(report)
        result[lang] = examples
    return result
