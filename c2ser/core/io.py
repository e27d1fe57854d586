"""Atomic file writes, so that a crash or ``kill -9`` never leaves a half-written output behind,
and the one reader of jsonl outputs (results, predictions).

Every writer goes through :func:`atomic_write` (or :func:`atomic_write_path` for libraries that
write by file name): a temporary file in the destination directory, fsynced, then
``os.replace``d into place; readers therefore see either the old file or the complete new one.
Files get the permissions of a plain ``open()`` under the process umask, never mkstemp's 0600. Training checkpoints use it too (``c2ser.tasks.checkpoint_io``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from c2ser.core.errors import BadInputError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO[bytes]], Any], sync_dir: bool = False
) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it and rename it over
    ``path``. The file gets the permissions a plain ``open()`` would give (mkstemp's are 0600);
    ``sync_dir`` also fsyncs the directory, so that the rename itself survives a power loss."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def atomic_write_path(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """:func:`atomic_write` for libraries that write by file name: ``write(tmp_path)``, then
    the umask's permissions (safetensors' ``save_file`` creates its files 0600, which
    colleagues on a shared cluster cannot read), fsync and rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_directory(out: str | os.PathLike) -> Iterator[Path]:
    """A temporary directory beside ``out`` (mode 0755, like a plain ``mkdir``) to fill; it
    replaces ``out`` (absent or empty) when the block ends, and is removed if the block fails, so
    a converted model directory is either complete or not there."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent.resolve()))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` atomically; the result loads with plain ``np.load``."""
    return atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array)))


def atomic_savefig(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return atomic_write_text(path, text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def read_jsonl(path: str | os.PathLike, key: str | None = "index") -> list[dict[str, Any]]:
    """Rows of a jsonl file (``c2ser infer`` results, ``predictions.jsonl``, teacher answers).

    A missing file, a malformed line or a row without ``key`` is a :class:`BadInputError` naming
    the file and line; blank lines are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: not found")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInputError(f"{path}:{n}: malformed JSON ({e.msg})") from None
        if not isinstance(row, dict) or (key is not None and key not in row):
            raise BadInputError(f"{path}:{n}: expected an object with an {key!r}")
        rows.append(row)
    return rows
