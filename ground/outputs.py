"""Everything that writes into an output folder: atomic files, JSON, figures, the run record, and
the checks that come before any of it (room to write, a lock on the settings of unfinished work);
and how every script's --help shows its flags.

    from outputs import atomic_path, write_json, save_figure
    write_json(out / "metrics.json", metrics)        # all-or-nothing: a crash leaves the old file
    save_figure(figure, out / "confusion_matrix.png")

Every file the project writes goes through `atomic_path`, so a reader never sees half a file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from data import DEFAULT_DATA_PATH

if TYPE_CHECKING:  # matplotlib is imported by what draws, not by predict.py and serve.py
    from matplotlib.figure import Figure

DPI = 110  # every PNG the project writes
MODEL_NAME = "model.keras"
RECORD_NAME = "run.json"  # beside every saved model: how it was made
LOGS_NAME = "logs"  # TensorBoard's event files, in an output folder
MIN_FREE_BYTES = 200_000_000  # a model, its backup and the plots, with room to spare
LOCK_NAME = ".lock"  # in an output folder: held by the run writing there, names its process
# Any JSON file the project reads back: run.json and export.json are a few kB and nest 5 deep.
MAX_JSON_BYTES = 10_000_000
MAX_JSON_DEPTH = 64


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every script's --help: each flag's text ends with its default in brackets, [off] for a
    switch. A text ending in brackets names its own default (one that --arch decides, or that is
    found at run time)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or text.endswith("]") or action.default in (None, argparse.SUPPRESS):
            return text
        return f"{text} [{'off' if action.default is False else '%(default)s'}]"


def add_folder_flags(
    parser, out: Path | str, fresh: str | None = None, data_use: str = "", out_help: str = "output folder"
) -> None:
    """The flags the scripts share, added to `parser` (or an argument group): --data (MNIST, for
    `data_use`), --out (`out`: a default folder, or in brackets where it is found at run time) and,
    where an interrupted run resumes, --fresh (`fresh`: what it discards)."""
    shipped = DEFAULT_DATA_PATH.relative_to(DEFAULT_DATA_PATH.parents[1])
    parser.add_argument("--data", type=Path, help=f"mnist.npz or a folder of IDX files{data_use} [{shipped}]")
    if isinstance(out, Path):
        parser.add_argument("--out", type=Path, default=out, help=out_help)
    else:
        parser.add_argument("--out", type=Path, help=f"{out_help} [{out}]")
    if fresh:
        parser.add_argument("--fresh", action="store_true", help=f"discard {fresh} in --out")


class OutputError(Exception):
    """An output folder that cannot take the results; the message says how to fix it."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix) and move it onto `path` on success.

    A crash or kill mid-write leaves the previous file whole. The suffix is kept because Keras
    insists on `.keras` and matplotlib picks the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(path: str | Path, value: dict | list) -> None:
    """Write `value` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2) + "\n")


def save_model(model, folder: Path, record: dict) -> None:
    """Save a Keras model as `folder`/model.keras and its record as run.json, each atomically."""
    with atomic_path(folder / MODEL_NAME) as temporary:
        model.save(temporary)
    write_json(folder / RECORD_NAME, record)


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> object:
    """The JSON value in a file, by `parse_json`'s rules (ValueError); OSError where it cannot be
    read."""
    with open(path, "rb") as stream:
        return parse_json(stream.read(max_bytes + 1), str(path), max_bytes)


def parse_json(
    raw: bytes, name: str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> object:
    """The JSON value in `raw` (`name` says where it came from). ValueError, saying why, for one
    that is not JSON, over `max_bytes`, or nested deeper than `max_depth` (deeper nesting would
    exhaust Python's recursion wherever the value is used)."""
    if len(raw) > max_bytes:
        raise ValueError(f"{name} is over {max_bytes:,} bytes")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(f"{name} nests too deep to read") from None
    if nesting(value) > max_depth:
        raise ValueError(f"{name} nests over {max_depth} levels deep")
    return value


def nesting(value: object) -> int:
    """How deep lists and objects nest in a JSON value (1 for a scalar), walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def record_of(model_path: Path) -> dict:
    """The run.json beside a saved model ({} for a model saved without one, or a file that is not
    a record)."""
    try:
        record = read_json(Path(model_path).parent / RECORD_NAME)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def sha256_of(path: Path) -> dict[str, str] | str:
    """A file's sha256, or a folder's files' sha256 by relative path."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        str(file.relative_to(path)): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def save_figure(figure: Figure, path: str | Path) -> None:
    """Write a matplotlib figure as a PNG, atomically."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=DPI)


def cannot_write(folder: Path) -> str | None:
    """Why files cannot be written into `folder`, made if missing: the system's reason (None: they can)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        return exc.strerror
    return None


def check_writable(folder: Path) -> None:
    """Fail before training, not after it, when `folder` cannot take files or is nearly full."""
    problem = cannot_write(folder)
    if problem:
        raise OutputError(f"cannot write to {folder} ({problem}): choose another --out")
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise OutputError(
            f"only {free / 1e6:.0f} MB free in {folder}, {MIN_FREE_BYTES / 1e6:.0f} MB needed: "
            "free some space or choose another --out"
        )


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold `folder` while inside: another process asking for it gets an OutputError naming the
    holder. The operating system lets go when the holder ends, however it ends (a kill included)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise OutputError(
                f"{folder} is in use by another run (process {holder}): wait for it to end, "
                "or choose another --out"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def keep_settings(lock: Path, settings: dict, out: Path) -> None:
    """Record `settings` in the file `lock`, refusing to continue work of other settings in `out`.

    Resuming an interrupted run (or search) is only sound with the settings that started it.
    """
    settings = json.loads(json.dumps(settings))  # tuples as JSON gives them back
    try:
        kept = read_json(lock) if lock.exists() else settings
    except (OSError, ValueError):
        raise OutputError(f"{lock} is damaged: add --fresh to discard the work in {out}") from None
    if kept != settings:
        raise OutputError(
            f"{out} holds work done with other settings (or an older version's): rerun that command to "
            "resume or reuse it, add --fresh to discard it, or choose another --out"
        )
    write_json(lock, settings)


def library_versions() -> dict[str, str]:
    """Python's and the libraries' versions that decide the numbers in a run record."""
    import keras
    import matplotlib
    import numpy
    import PIL
    import scipy
    import sklearn
    import tensorflow

    # Pillow, SciPy and matplotlib's fonts make the training's images that are not digits too.
    modules = (tensorflow, keras, numpy, scipy, matplotlib)
    return {
        "python": platform.python_version(),
        **{module.__name__: module.__version__ for module in modules},
        "pillow": PIL.__version__,
        "scikit-learn": sklearn.__version__,
    }


def run_record(**facts) -> dict:
    """The record saved beside a model: when, with which libraries, and the `facts` given."""
    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **facts,
        "versions": library_versions(),
    }
