import json
import math

import numpy as np
import pytest

from c2ser.cli.main import main
from c2ser.data.style import active_seconds, bin_attributes, count_units, f0_median, loudness
from tests.conftest import tone


def test_binning_by_mean_plus_minus_std():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # mean 4, std 2
    assert bin_attributes(values) == [
        "low",
        "medium",
        "medium",
        "medium",
        "medium",
        "medium",
        "high",
    ]
    assert bin_attributes([1.0, math.nan, 9.0]) == ["medium"] * 3  # std 4 around 5; NaN -> medium


def test_pitch_and_loudness_measurements():
    assert f0_median(tone(1.0, freq=150.0)) == pytest.approx(150.0, rel=0.03)
    assert f0_median(tone(1.0, freq=260.0)) == pytest.approx(260.0, rel=0.03)
    assert math.isnan(f0_median(np.zeros(16000, dtype=np.float32)))
    assert math.isnan(f0_median(tone(0.02)))  # shorter than Praat's 3 periods of 60 Hz
    loud, quiet = loudness(tone(1.0, amp=0.5)), loudness(tone(1.0, amp=0.05))
    assert loud - quiet == pytest.approx(20.0, abs=0.5)
    assert loudness(tone(0.2, amp=0.5)) == pytest.approx(loud, abs=3.0)  # short-clip fallback


def test_rate_units_and_active_time():
    assert count_units("今天天气很好。", "zh") == 6
    assert count_units("Hello beautiful world", "en") == 2 + 3 + 1
    speech = np.concatenate([np.zeros(16000), tone(0.5), np.zeros(8000)]).astype(np.float32)
    assert active_seconds(speech) == pytest.approx(0.5, abs=0.04)


def test_cli_adds_bins_and_reports_bad_entries(tmp_path, wav_file, capsys):
    rows = [
        {
            "index": f"u{i}",
            "wav": wav_file(f"u{i}.wav", 0.6 + 0.2 * i, freq=120 + 40 * i).name,
            "text": "one two three",
            "emotion": "sad",
        }
        for i in range(5)
    ]
    rows.append({"index": "gone", "wav": "gone.wav", "text": "x", "emotion": "sad"})
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["style-attributes", "--manifest", str(m)]) == 2
    err = capsys.readouterr().err
    assert "gone.wav: audio file not found" in err and "Traceback" not in err
    assert main(["style-attributes", "--manifest", str(m), "--skip-bad"]) == 0
    assert "skipped 1" in capsys.readouterr().out
    out = [json.loads(line) for line in m.read_text().splitlines()]
    assert len(out) == 5 and out[0]["wav"] == "u0.wav"
    assert out[0]["pitch"] == "low" and out[-1]["pitch"] == "high"
