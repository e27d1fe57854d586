import numpy as np

from c2ser.utils.io import atomic_save_npy, atomic_savefig, atomic_write_text, record_benchmark


def test_atomic_writes_leave_no_temp_files(tmp_path):
    atomic_write_text(tmp_path / "a" / "x.txt", "hello")
    atomic_save_npy(tmp_path / "a" / "f.npy", np.arange(6).reshape(2, 3))
    assert (tmp_path / "a" / "x.txt").read_text() == "hello"
    assert np.load(tmp_path / "a" / "f.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["f.npy", "x.txt"]


def test_atomic_savefig_writes_the_format_of_the_suffix_and_closes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, magic in (("c.png", b"\x89PNG"), ("c.pdf", b"%PDF")):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        atomic_savefig(fig, tmp_path / "figs" / name)
        assert (tmp_path / "figs" / name).read_bytes().startswith(magic)
        assert not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["c.pdf", "c.png"]


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

    from c2ser.utils.io import benchmark_provenance, machine_name

    lines = benchmark_provenance(["python", "scripts/b.py", "--n", "3 s"], "cpu", 0.5).splitlines()
    assert lines[0] == "- command: `python scripts/b.py --n '3 s'`"
    assert lines[1].startswith(f"- machine: {machine_name('cpu')}; torch ")
    assert machine_name("cpu").endswith(f", {os.cpu_count()} cores")
    assert lines[2].startswith("- 1-min load average 0.5 before / ")
