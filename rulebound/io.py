"""Atomic writes: a failed step never leaves a half-written file or folder behind."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` only on success.

    The temporary sits in the same folder so the final ``os.replace`` is atomic. On any
    exception the temporary is removed and an existing ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=target.suffix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        _make_readable(tmp)  # mkstemp/mkdtemp (and some writers) create owner-only entries
        if is_dir and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _make_readable(path: Path) -> None:
    if path.is_dir():
        os.chmod(path, 0o755)
        for root, dirs, files in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
    else:
        os.chmod(path, 0o644)


def read_table(path: str | os.PathLike, columns, purpose: str):
    """Read a parquet or CSV table; stop with a DataError naming the file if columns or rows are missing."""
    import pandas as pd

    from rulebound.errors import DataError

    df = pd.read_csv(path) if str(path).endswith(".csv") else pd.read_parquet(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; {purpose} needs {list(columns)}.")
    if df.empty:
        raise DataError(f"{path} has no rows; {purpose} needs at least one.")
    return df


def write_parquet(df, path: str | os.PathLike) -> None:
    """Write a DataFrame to parquet atomically, without pandas' index."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_csv(df, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def setup_logging(log_path: str | os.PathLike | None) -> logging.Logger:
    """Send the package's logging (and warnings) to a Snakemake rule's log file and stderr."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.captureWarnings(True)
    if log_path:
        _log_crashes(root, handlers[-1])
    return logging.getLogger("rulebound")


def _log_crashes(root: logging.Logger, file_handler: logging.FileHandler) -> None:
    """Uncaught errors, and crashes in native code (a segfault in llama.cpp), end up in the rule's log too.

    Snakemake points the user at the log file; without this it would hold the last INFO line only.
    """
    import faulthandler

    faulthandler.enable(file=file_handler.stream, all_threads=False)
    previous = sys.excepthook

    def hook(kind, value, tb):
        if not issubclass(kind, KeyboardInterrupt):
            root.error("failed: %s: %s", kind.__name__, value, exc_info=(kind, value, tb))
        previous(kind, value, tb)

    sys.excepthook = hook
