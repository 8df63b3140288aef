"""The result of the ``speech_segments`` pipeline, and the progress bar that follows one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

__all__ = ["Segment", "SpeechResult", "ProgressArg", "Progress"]

#: ``progress=`` of :meth:`Client.speech`: ``True`` for a tqdm bar, or a callable taking
#: ``(done_seconds, total_seconds_or_None)``.
ProgressArg = Union[bool, Callable[[float, Union[float, None]], None], None]


@dataclass(frozen=True)
class Segment:
    """One stretch of speech, in seconds from the start of the recording."""

    start: float
    end: float


@dataclass(frozen=True)
class SpeechResult:
    """What ``speech_segments`` found in a recording.

    Attributes:
        segments: the speech, in order.
        duration: seconds of audio.
        sample_rate: the rate the model ran at (16000 or 8000).
        job_id: the job that computed it.
    """

    segments: list[Segment]
    duration: float
    sample_rate: int
    job_id: str

    @classmethod
    def from_result(cls, job_id: str, result: dict[str, Any]) -> "SpeechResult":
        """Builds it from a job's JSON ``result``."""
        return cls(
            [Segment(float(s["start"]), float(s["end"])) for s in result.get("segments", [])],
            float(result.get("duration", 0.0)),
            int(result.get("sample_rate", 0)),
            job_id,
        )


class Progress:
    """Feeds a job's ``progress`` (seconds of audio done / total) to a tqdm bar or a callable."""

    def __init__(self, progress: ProgressArg, description: str) -> None:
        self._callback: Callable[[float, float | None], None] | None = None
        self._bar: Any = None
        if callable(progress):
            self._callback = progress
        elif progress:
            try:
                from tqdm.auto import tqdm
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError("progress=True needs tqdm: pip install 'inferq[progress]'") from e
            self._bar = tqdm(total=None, desc=description, unit="s", bar_format=None)

    def update(self, progress: dict[str, Any] | None) -> None:
        """Shows a new ``{"done", "total"}``."""
        if not progress:
            return
        done = float(progress.get("done") or 0.0)
        total = progress.get("total")
        total = float(total) if total is not None else None
        if self._callback is not None:
            self._callback(done, total)
        if self._bar is not None:
            if total is not None and self._bar.total != total:
                self._bar.total = total
            self._bar.n = done
            self._bar.refresh()

    def close(self) -> None:
        """Closes the bar, if there is one."""
        if self._bar is not None:
            self._bar.close()
