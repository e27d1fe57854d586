"""The skip report groups by reason, and ``reading`` turns reader errors into one named line."""

from __future__ import annotations

import pytest

from c2ser.core.errors import BadInputError, Skip, SkipReport, reading


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("too long: 31.2 s > 30 s", "too long"),
        ("/data/x.wav: audio file not found", "audio file not found"),
        ("audio: /data/x.wav: audio file not found", "audio: audio file not found"),
        ("features: missing Emotion2Vec-S features /f/u4.npy", "features: missing Emotion2Vec-S features"),
        ("unknown label 'bored' (expected one of ['sad'])", "unknown label 'bored'"),
        ("/f/u.npy: unreadable feature file (bad: y)", "unreadable feature file"),
    ],
)  # fmt: skip
def test_kinds_leave_out_paths_and_details(reason, kind):
    assert Skip("u1", reason).kind == kind


def test_report_groups_the_largest_kind_first():
    report = SkipReport()
    report.add("a", "/x/a.wav: audio file not found")
    report.add("b", "too long: 40 s > 30 s")
    report.add("c", "/x/c.wav: audio file not found")
    assert [(k, [s.where for s in v]) for k, v in report.by_kind().items()] == [
        ("audio file not found", ["a", "c"]),
        ("too long", ["b"]),
    ]
    assert report.summary() == "skipped 3 (2 audio file not found, 1 too long)"


def _read(path, fail):
    with reading(path, "checkpoint"):
        fail()


def test_reading_names_the_file(tmp_path):
    def open_it():
        (tmp_path / "nope.pt").read_bytes()

    with pytest.raises(BadInputError, match=r"nope\.pt: not found \(expected a checkpoint\)"):
        _read(tmp_path / "nope.pt", open_it)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"x")
    with pytest.raises(BadInputError, match=r"bad\.pt: not a readable checkpoint \(missing entry"):
        _read(bad, lambda: {}["weight"])

    def ours():
        raise BadInputError("already one line")

    with pytest.raises(BadInputError, match="already one line"):  # ours pass through unchanged
        _read(bad, ours)
