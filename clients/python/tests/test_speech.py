"""The speech pipeline through the client: upload, progress from the job's events, segments."""

from __future__ import annotations

import json

import pytest

import inferq
from conftest import REPO

AUDIO = REPO / "tests" / "audio"


def reference(name: str) -> dict:
    return json.loads((AUDIO / name).read_text())


def test_speech_reports_progress_and_returns_the_reference_segments(client: inferq.Client) -> None:
    seen: list[tuple[float, float | None]] = []
    result = client.speech(AUDIO / "speech.wav", progress=lambda done, total: seen.append((done, total)), timeout=120)
    ref = reference("speech.ref.json")
    assert [(s.start, s.end) for s in result.segments] == [(s["start"], s["end"]) for s in ref["segments"]]
    assert result.duration == pytest.approx(ref["duration"], abs=1e-3)
    assert result.sample_rate == 16000
    assert seen, "no progress was reported"
    dones = [d for d, _ in seen]
    assert dones == sorted(dones), "progress went back"
    assert seen[-1] == (pytest.approx(ref["duration"], abs=1e-3), pytest.approx(ref["duration"], abs=1e-3))


async def test_async_speech_with_a_tqdm_bar(aclient: inferq.AsyncClient, capsys: pytest.CaptureFixture[str]) -> None:
    result = await aclient.speech((AUDIO / "speech_8k.wav").read_bytes(), parameters={"sampling_rate": 8000},
                                  progress=True, timeout=120)
    ref = reference("speech_8k.ref.json")
    assert [(s.start, s.end) for s in result.segments] == [(s["start"], s["end"]) for s in ref["segments"]]
    err = capsys.readouterr().err
    assert "speech" in err and "100%" in err  # tqdm's bar reached the total


def test_audio_errors(client: inferq.Client) -> None:
    with pytest.raises(inferq.ValidationError) as e:
        client.speech(AUDIO / "not_audio.wav")
    assert e.value.code == "invalid_audio"
    with pytest.raises(inferq.JobFailed) as f:
        client.speech(AUDIO / "truncated.wav", timeout=120)
    assert f.value.code == "invalid_audio"
