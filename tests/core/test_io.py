import numpy as np

from c2ser.core.io import atomic_save_npy, atomic_savefig, atomic_write_text


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
