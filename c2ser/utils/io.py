"""Atomic file writes, so that a crash or ``kill -9`` never leaves a half-written output behind.

Every writer goes to a temporary file in the destination directory and ``os.replace``s it into
place; readers therefore see either the old file or the complete new one.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shlex
import tempfile
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` atomically; the result loads with plain ``np.load``."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array))
    return atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


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


BENCHMARKS_FILE = Path(__file__).resolve().parents[2] / "BENCHMARKS.md"


def record_benchmark(
    section: str, markdown: str, path: str | os.PathLike = BENCHMARKS_FILE
) -> Path:
    """Replace (or append) the section ``## {section}`` of BENCHMARKS.md with ``markdown``.

    Sections are delimited by HTML comment markers so that several benchmarks can update the
    same file independently without clobbering each other's figures.
    """
    path = Path(path)
    begin, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    block = f"{begin}\n## {section}\n\n{markdown.strip()}\n{end}\n"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    new = (
        pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + "\n\n" + block
    )
    return atomic_write_text(path, new)


def machine_name(device: str = "cpu") -> str:
    """What a benchmark ran on: the CUDA device's name, or '<CPU model>, <n> cores'."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "unknown CPU"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def benchmark_provenance(command: Sequence[str], device: str, load_before: float) -> str:
    """The lines that end every BENCHMARKS.md section: command, machine, versions, date, and the
    load average around the run (a busy shared machine skews absolute timings more than ratios)."""
    import torch

    return "\n".join([
        f"- command: `{shlex.join(command)}`",
        f"- machine: {machine_name(device)}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {date.today().isoformat()}",
        f"- 1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after (a shared "
        "machine skews timings; compare ratios from quiet runs)",
    ])  # fmt: skip
