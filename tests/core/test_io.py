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


def test_outputs_respect_the_umask(tmp_path, monkeypatch):
    """Colleagues on a shared cluster read our outputs: plain-open() permissions under the
    umask, never 0600 (mkstemp's, and what safetensors' save_file creates)."""
    import stat

    import torch
    from safetensors.torch import save_file

    import c2ser.core.io as io
    from c2ser.data.manifest import Utterance, write_manifest
    from tests.factories import tiny_emotion2vec_s

    for umask in (0o022, 0o027):
        monkeypatch.setattr(io, "_UMASK", umask)  # read once at import (os.umask sets it too)
        out = tmp_path / oct(umask)
        io.atomic_write_text(out / "x.txt", "hello")
        io.atomic_save_npy(out / "f.npy", np.zeros(2))
        io.write_json_atomic(out / "metrics.json", {})
        write_manifest(out / "m.jsonl", [Utterance(id="a", wav="a.wav")])
        io.atomic_write_path(out / "w.safetensors", lambda p: save_file({"a": torch.zeros(1)}, p))
        tiny_emotion2vec_s().save_pretrained(out / "e2vs")
        files = [p for p in out.rglob("*") if p.is_file()]
        assert len(files) == 7
        modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in files}
        assert modes == dict.fromkeys(modes, 0o666 & ~umask)
