"""Preference data from outside the generators: a Hugging Face dataset, a set shipped with rulebound, or a file.

``load_preference_source`` reads ``hf:<owner>/<name>``, ``builtin:<name>`` (a jsonl in ``rulebound/data``)
or a local .parquet/.jsonl/.json/.csv file, checks it has the columns a preference stage needs, fills
missing optional columns, and drops (or stops on) rows whose required fields are not non-empty strings.
It returns the frame and a report of what it did, so a data card can say so.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from importlib import resources
from pathlib import Path

import pandas as pd

from rulebound.errors import DataError

log = logging.getLogger(__name__)

REQUIRED = ("prompt", "chosen", "rejected")
OPTIONAL = {"system": ""}
LOCAL_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
INVALID_ROWS = ("drop", "stop")


def load_preference_source(source: str, *, split: str = "train", invalid_rows: str = "drop",
                           required=REQUIRED, optional: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Read ``source``, check it and return ``(frame, report)``.

    The report holds ``source``, ``rows_in``, ``rows_out``, ``rows_dropped``, ``reasons`` (count per
    "empty <column>" / "non-string <column>") and ``columns_filled`` (optional columns the source lacked).
    ``split`` applies to ``hf:`` sources only; files and builtin sets are read whole.
    """
    if invalid_rows not in INVALID_ROWS:
        raise DataError(f"invalid_rows must be 'drop' or 'stop', got {invalid_rows!r}.")
    optional = dict(OPTIONAL if optional is None else optional)
    df, where = read_source(source, split=split)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{where} has no column {missing[0]!r} (columns: {', '.join(map(str, df.columns))}); "
                        f"preference data needs {', '.join(required)}. Rename the column in the file, "
                        "or point the data source at a file that has it.")
    df, filled = _fill_optional(df, optional, where)
    df, reasons, dropped = _check_rows(df, list(required), where, invalid_rows)
    if df.empty:
        raise DataError(f"{where}: none of its {dropped} rows has non-empty text in {', '.join(required)}.")
    report = {"source": source, "rows_in": len(df) + dropped, "rows_out": len(df), "rows_dropped": dropped,
              "reasons": reasons, "columns_filled": filled}
    log.info("read %d preference rows from %s (%d dropped)", len(df), where, dropped)
    return df.reset_index(drop=True), report


def read_source(source: str, *, split: str = "train") -> tuple[pd.DataFrame, str]:
    """The raw table behind ``source`` and a name for it that error messages can use."""
    if not isinstance(source, str) or not source.strip():
        raise DataError(f"A data source must be a non-empty string, got {source!r}.")
    if source.startswith("hf:"):
        return _read_hub(source.split(":", 1)[1], split), source
    if source.startswith("builtin:"):
        return _read_builtin(source.split(":", 1)[1]), source
    return _read_file(Path(source).expanduser()), source


def builtin_names() -> list[str]:
    """Names usable as ``builtin:<name>``: the jsonl files shipped in ``rulebound/data``."""
    return sorted(p.name[: -len(".jsonl")] for p in resources.files("rulebound.data").iterdir()
                  if p.name.endswith(".jsonl"))


def _read_builtin(name: str) -> pd.DataFrame:
    entry = resources.files("rulebound.data") / f"{name}.jsonl"
    if not entry.is_file():
        raise DataError(f"No builtin data set {name!r}; builtin sets: "
                        f"{', '.join('builtin:' + n for n in builtin_names()) or 'none'}.")
    with resources.as_file(entry) as path:
        return pd.read_json(path, lines=True, dtype=False)


def _read_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DataError(f"Data source {path}: expected hf:<owner>/<name>, builtin:<name> or a local "
                        f"{'/'.join(LOCAL_SUFFIXES)} file.")
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist; check the path (relative paths start at the "
                        "folder Snakemake runs in).")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False, na_values=[])  # an empty cell stays ""
        return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
    except (ValueError, OSError) as exc:  # pyarrow and pandas parse errors are ValueError / OSError subclasses
        raise DataError(f"Could not read {path} as {suffix[1:]} ({type(exc).__name__}: {exc}).") from exc


def _read_hub(repo_id: str, split: str) -> pd.DataFrame:
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise DataError(f"Data source hf:{repo_id}: expected hf:<owner>/<name>.")
    from datasets import load_dataset

    try:
        dataset = load_dataset(repo_id, split=split)
    except Exception as exc:  # offline, missing, gated, bad split: one message with the way out
        offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes")
                      for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
        why = "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)" if offline else "the hub is unreachable"
        raise DataError(
            f"Could not load the dataset hf:{repo_id} (split {split!r}) from the Hugging Face hub: {why}, "
            f"or the dataset or split does not exist ({type(exc).__name__}: {str(exc)[:300]}). "
            f"Use a local file instead: on a machine with network access run "
            f"`hf download {repo_id} --repo-type dataset --local-dir <folder>` and set the data source to the "
            ".parquet/.jsonl file inside it, or set HF_HOME to a cache that already holds the dataset."
        ) from exc
    return dataset.to_pandas()


def _fill_optional(df: pd.DataFrame, optional: dict, where: str) -> tuple[pd.DataFrame, list[str]]:
    """Add missing optional columns with their default (one warning), and replace missing values in present ones."""
    df = df.copy()
    filled = [c for c in optional if c not in df.columns]
    for column, default in optional.items():
        if column in filled:
            df[column] = default
        else:
            df[column] = df[column].map(lambda v, d=default: d if _is_missing(v) else v)
    if filled:
        log.warning("%s has no %s column%s; filled with %s", where, ", ".join(repr(c) for c in filled),
                    "s" if len(filled) > 1 else "", ", ".join(f"{c}={optional[c]!r}" for c in filled))
    return df, filled


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_rows(df: pd.DataFrame, required: list[str], where: str,
                invalid_rows: str) -> tuple[pd.DataFrame, dict, int]:
    """Keep rows whose required fields are non-empty strings; count why the others fail."""
    bad = pd.Series(False, index=df.index)
    reasons: dict[str, int] = {}
    for column in required:
        is_str = df[column].map(lambda v: isinstance(v, str))
        empty = is_str & (df[column].map(lambda v: v.strip() == "" if isinstance(v, str) else False))
        for reason, mask in ((f"non-string {column}", ~is_str), (f"empty {column}", empty)):
            if mask.any():
                reasons[reason] = int(mask.sum())
        bad |= ~is_str | empty
    n_bad = int(bad.sum())
    if not n_bad:
        return df, reasons, 0
    position = int(bad.to_numpy().argmax())
    detail = ", ".join(f"{k}: {v}" for k, v in reasons.items())
    hint = _conversation_hint(df.iloc[position][required])
    if invalid_rows == "stop":
        raise DataError(f"{where}: {n_bad} of {len(df)} rows have empty or non-string fields ({detail}); the first "
                        f"is row {position}.{hint} Fix those rows, or set data.invalid_rows: drop to skip them.")
    log.warning("%s: dropped %d of %d rows with empty or non-string fields (%s); first at row %d.%s",
                where, n_bad, len(df), detail, position, hint)
    return df[~bad], reasons, n_bad


def _conversation_hint(row: pd.Series) -> str:
    """Say so when a field holds a message list: conversational datasets need flattening first."""
    for column, value in row.items():
        if hasattr(value, "__len__") and not isinstance(value, str) and len(value) and isinstance(value[0], dict):
            return (f" Its {column!r} is a list of messages; flatten conversational data to one string per "
                    "field (the assistant's reply) before ingesting it.")
    return ""


def split_holdout(df: pd.DataFrame, test_fraction: float, seed: int, *,
                  group: str = "prompt") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic (train, test) split; rows that share ``group`` (the prompt) go to the same side.

    Groups are ranked by a hash of ``seed`` and their value, so the split depends on neither row order
    nor library versions. Both sides get at least one group.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}.")
    keys = df[group].astype(str).drop_duplicates()
    if len(keys) < 2:
        raise DataError(f"A train/test split needs at least two distinct {group!r} values; the data has {len(keys)}.")
    ranked = sorted(keys, key=lambda k: hashlib.sha1(f"{seed}\x00{k}".encode()).hexdigest())
    n_test = min(max(1, round(len(ranked) * test_fraction)), len(ranked) - 1)
    in_test = df[group].astype(str).isin(set(ranked[:n_test]))
    return df[~in_test].reset_index(drop=True), df[in_test].reset_index(drop=True)


def describe_report(report: dict) -> str:
    """One paragraph for a log or data card: what was read, filled and dropped."""
    text = f"{report['rows_in']} rows read from `{report['source']}`, {report['rows_out']} kept"
    if report["rows_dropped"]:
        text += f"; {report['rows_dropped']} dropped (" + ", ".join(f"{k}: {v}" for k, v in
                                                                   report["reasons"].items()) + ")"
    if report["columns_filled"]:
        text += f"; missing column(s) {', '.join(report['columns_filled'])} filled with defaults"
    return text + "."
