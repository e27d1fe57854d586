"""scripts/benchmarks.py: BENCHMARKS.md sections and their provenance lines."""

from pathlib import Path

from scripts.benchmarks import BENCHMARKS_FILE, benchmark_provenance, machine_name, record_benchmark


def test_benchmarks_file_is_the_scripts_own_tree():
    assert Path(__file__).resolve().parents[2] / "BENCHMARKS.md" == BENCHMARKS_FILE


def test_record_benchmark_replaces_only_its_section(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    record_benchmark("A", "first", path)
    record_benchmark("B", "other", path)
    record_benchmark("A", "second", path)
    text = path.read_text()
    assert "second" in text and "first" not in text and "other" in text
    assert text.count("## A") == 1 and text.index("## A") < text.index("## B")


def test_benchmark_provenance_names_command_machine_and_load():
    import os

    lines = benchmark_provenance(["python", "scripts/b.py", "--n", "3 s"], "cpu", 0.5).splitlines()
    assert lines[0] == "- command: `python scripts/b.py --n '3 s'`"
    assert lines[1].startswith(f"- machine: {machine_name('cpu')}; torch ")
    assert machine_name("cpu").endswith(f", {os.cpu_count()} cores")
    assert lines[2].startswith("- 1-min load average 0.5 before / ")
