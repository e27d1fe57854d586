import json

import pytest

from c2ser.cli.main import main
from c2ser.core.errors import BadInputError, SkipReport
from c2ser.data.manifest import Utterance, read_manifest, write_manifest


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_jsonl_emo_emilia_schema_and_relative_paths(tmp_path):
    m = write(
        tmp_path / "m.jsonl",
        [
            json.dumps(
                {"index": "ZH_1", "emotion": "happy", "wav": "./wav/ZH_1.wav", "text": "你好"}
            ),
            json.dumps(
                {
                    "index": "EN_2",
                    "emotion": "sad",
                    "wav": "/abs/EN_2.wav",
                    "text": "hi",
                    "speed": "low",
                    "fold": "3",
                }
            ),
        ],
    )
    a, b = read_manifest(m)
    assert a.wav == str(tmp_path / "wav" / "ZH_1.wav")
    assert (a.language, b.language) == ("zh", "en")  # from the Emo-Emilia id prefix
    assert b.wav == "/abs/EN_2.wav" and b.fold == 3 and b.extra == {"speed": "low"}


def test_audio_root_falls_back_to_basename(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "X.wav").write_bytes(b"")
    m = write(tmp_path / "m.jsonl", [json.dumps({"index": "X", "wav": "./Emo-Emilia/wav/X.wav"})])
    (u,) = read_manifest(m, audio_root=tmp_path / "audio")
    assert u.wav == str(tmp_path / "audio" / "X.wav")


def test_wav_scp(tmp_path):
    m = write(tmp_path / "wav.scp", ["# comment", "a /x/a.wav", "b rel/b b.wav", ""])
    a, b = read_manifest(m)
    assert (a.id, a.wav) == ("a", "/x/a.wav")
    assert b.wav == str(tmp_path / "rel/b b.wav")  # paths may contain spaces


@pytest.mark.parametrize(
    "line, reason",
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"index": "x"}), "missing field(s) wav"),
        (json.dumps({"index": "x", "wav": "x.wav", "emotion": "bored"}), "unknown label 'bored'"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, reason):
    m = write(
        tmp_path / "m.jsonl", [json.dumps({"index": "ok", "wav": "ok.wav", "emotion": "sad"}), line]
    )
    with pytest.raises(BadInputError, match=rf"m\.jsonl:2: .*{reason[:12]}"):
        read_manifest(m, labels=["sad", "happy"])
    report = SkipReport()
    utts = read_manifest(m, labels=["sad", "happy"], skip_bad=True, report=report)
    assert [u.id for u in utts] == ["ok"] and len(report) == 1


def test_duplicate_ids_are_errors(tmp_path):
    m = write(tmp_path / "wav.scp", ["a x.wav", "a y.wav"])
    with pytest.raises(BadInputError, match="duplicate id 'a'"):
        read_manifest(m)


def test_round_trip(tmp_path):
    utts = [Utterance("u1", "/w/u1.wav", "angry", "t", "en", "s1", "train", 2, {"pitch": "high"})]
    write_manifest(tmp_path / "o.jsonl", utts)
    assert read_manifest(tmp_path / "o.jsonl") == utts


def test_validate_cli_reports_each_bad_entry(tmp_path, wav_file, capsys):
    good = wav_file("good.wav", 0.5)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "trunc.wav").write_bytes(good.read_bytes()[:30])
    m = write(
        tmp_path / "m.jsonl",
        [
            json.dumps({"index": "g", "wav": "good.wav", "emotion": "sad"}),
            json.dumps({"index": "e", "wav": "empty.wav", "emotion": "sad"}),
            json.dumps({"index": "t", "wav": "trunc.wav", "emotion": "sad"}),
            json.dumps({"index": "m", "wav": "missing.wav", "emotion": "sad"}),
            "{oops",
        ],
    )
    assert main(["validate", "--manifest", str(m)]) == 2
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.startswith("bad: ")]
    assert len(bad) == 4 and "Traceback" not in out
    assert "m.jsonl:5" in out and "missing.wav: audio file not found" in out
    assert "1 usable" in out


def test_cli_missing_manifest_is_one_line(tmp_path, capsys):
    assert main(["validate", "--manifest", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_validate_cli_defaults_to_the_7_labels(tmp_path, wav_file, capsys):
    wav_file("a.wav", 0.3)
    rows = [
        {"index": f"u{i}", "wav": "a.wav", "emotion": e} for i, e in enumerate(["sad", "bored"])
    ]
    m = write(tmp_path / "m.jsonl", [json.dumps(r) for r in rows])
    assert main(["validate", "--manifest", str(m)]) == 2
    out = capsys.readouterr().out
    assert "bad: 1 unknown label 'bored'" in out and "1 usable" in out
    assert main(["validate", "--manifest", str(m), "--labels"]) == 0  # the option alone: any
    assert main(["validate", "--manifest", str(m), "--labels", "sad", "bored"]) == 0


def test_validate_cli_groups_the_summary_by_reason(tmp_path, capsys):
    rows = [json.dumps({"index": f"u{i}", "wav": f"w{i}.wav", "emotion": "sad"}) for i in range(40)]
    m = write(tmp_path / "m.jsonl", [*rows, "{oops"])
    assert main(["validate", "--manifest", str(m)]) == 2
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "bad: 40 audio file not found" and lines[6] == "  ... and 35 more"
    assert lines[7] == "bad: 1 malformed JSON"
    assert lines[-1].endswith("0 usable, skipped 41 (40 audio file not found, 1 malformed JSON)")
    assert len(out) < 2000
