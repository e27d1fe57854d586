"""What the benchmark scripts share: recording a section of BENCHMARKS.md and its provenance.

Imported by ``scripts/bench_*.py`` (which run with ``scripts/`` on ``sys.path``). The file written
is the one beside this script: with c2ser installed from another clone, a benchmark run here still
edits this clone's BENCHMARKS.md.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from c2ser.core.io import atomic_write_text

# the BENCHMARKS.md of the tree this script lives in, never that of the installed package
BENCHMARKS_FILE = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


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
