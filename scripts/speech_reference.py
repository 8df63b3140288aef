#!/usr/bin/env python3
"""Reference speech segments of a 16 kHz (or 8 kHz) mono 16-bit WAV file, computed exactly as
the silero-vad package (6.2.3) computes them, for the speech pipeline's tests.

The package itself needs torch, which this project does not install; so `OnnxWrapper`,
`get_speech_timestamps` and `get_speech_timestamps_from_probs` from its `silero_vad/utils_vad.py`
are ported here line by line with numpy in place of torch (same float32 arithmetic, same model
file, same onnxruntime session options: one intra-op and one inter-op thread). The audio is read
as the package's read_audio reads 16-bit PCM: int16 / 32768.

Usage:
    speech_reference.py FILE.wav [--model models/silero_vad/model.onnx] [--param name=value ...]
Prints {"segments": [{"start", "end"}, ...], "duration", "sample_rate"} in seconds
(return_seconds=True, time_resolution=3), as the pipeline's result has them.

Needs numpy and onnxruntime (scripts/setup.sh installs both into .venv-test).
"""
import argparse
import json
import sys
import wave

import numpy as np
import onnxruntime


class OnnxWrapper:
    """silero_vad.utils_vad.OnnxWrapper for one stream, numpy instead of torch."""

    def __init__(self, path):
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            path, providers=["CPUExecutionProvider"], sess_options=opts)
        self.reset_states()

    def reset_states(self, batch_size=1):
        self._state = np.zeros((2, batch_size, 128), dtype=np.float32)
        self._context = np.zeros(0, dtype=np.float32)
        self._last_sr = 0
        self._last_batch_size = 0

    def __call__(self, x, sr):
        if x.ndim == 1:
            x = x[np.newaxis, :]
        num_samples = 512 if sr == 16000 else 256
        if x.shape[-1] != num_samples:
            raise ValueError("Provided number of samples is %d" % x.shape[-1])
        batch_size = x.shape[0]
        context_size = 64 if sr == 16000 else 32
        if not self._last_batch_size:
            self.reset_states(batch_size)
        if self._last_sr and self._last_sr != sr:
            self.reset_states(batch_size)
        if self._last_batch_size and self._last_batch_size != batch_size:
            self.reset_states(batch_size)
        if not len(self._context):
            self._context = np.zeros((batch_size, context_size), dtype=np.float32)
        x = np.concatenate([self._context, x], axis=1).astype(np.float32)
        out, state = self.session.run(None, {
            "input": x, "state": self._state, "sr": np.array(sr, dtype="int64")})
        self._state = state
        self._context = x[..., -context_size:]
        self._last_sr = sr
        self._last_batch_size = batch_size
        return out


def get_speech_timestamps(audio, model, threshold=0.5, sampling_rate=16000,
                          min_speech_duration_ms=250, max_speech_duration_s=float("inf"),
                          min_silence_duration_ms=100, speech_pad_ms=30, return_seconds=False,
                          time_resolution=1, neg_threshold=None):
    window_size_samples = 512 if sampling_rate == 16000 else 256
    model.reset_states()
    audio_length_samples = len(audio)
    speech_probs = []
    for current_start_sample in range(0, audio_length_samples, window_size_samples):
        chunk = audio[current_start_sample: current_start_sample + window_size_samples]
        if len(chunk) < window_size_samples:
            chunk = np.pad(chunk, (0, int(window_size_samples - len(chunk))))
        speech_prob = model(chunk, sampling_rate).item()
        speech_probs.append(speech_prob)
    return get_speech_timestamps_from_probs(
        speech_probs, sampling_rate=sampling_rate, threshold=threshold,
        min_speech_duration_ms=min_speech_duration_ms,
        max_speech_duration_s=max_speech_duration_s,
        min_silence_duration_ms=min_silence_duration_ms, speech_pad_ms=speech_pad_ms,
        return_seconds=return_seconds, time_resolution=time_resolution,
        neg_threshold=neg_threshold, audio_length_samples=audio_length_samples)


def get_speech_timestamps_from_probs(speech_probs, sampling_rate=16000, threshold=0.5,
                                     min_speech_duration_ms=250,
                                     max_speech_duration_s=float("inf"),
                                     min_silence_duration_ms=100, speech_pad_ms=30,
                                     return_seconds=False, time_resolution=1,
                                     neg_threshold=None, min_silence_at_max_speech=98,
                                     use_max_poss_sil_at_max_speech=True,
                                     audio_length_samples=None, step=1):
    window_size_samples = 512 if sampling_rate == 16000 else 256
    if audio_length_samples is None:
        audio_length_samples = len(speech_probs) * window_size_samples

    min_speech_samples = sampling_rate * min_speech_duration_ms / 1000
    speech_pad_samples = sampling_rate * speech_pad_ms / 1000
    max_speech_samples = sampling_rate * max_speech_duration_s - window_size_samples - 2 * speech_pad_samples
    min_silence_samples = sampling_rate * min_silence_duration_ms / 1000
    min_silence_samples_at_max_speech = sampling_rate * min_silence_at_max_speech / 1000

    triggered = False
    speeches = []
    current_speech = {}

    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)
    temp_end = 0
    prev_end = next_start = 0
    possible_ends = []

    for i, speech_prob in enumerate(speech_probs):
        cur_sample = window_size_samples * i

        if (speech_prob >= threshold) and temp_end:
            sil_dur = cur_sample - temp_end
            if sil_dur > min_silence_samples_at_max_speech:
                possible_ends.append((temp_end, sil_dur))
            temp_end = 0
            if next_start < prev_end:
                next_start = cur_sample

        if (speech_prob >= threshold) and not triggered:
            triggered = True
            current_speech['start'] = cur_sample
            continue

        if triggered and (cur_sample - current_speech['start'] > max_speech_samples):
            if use_max_poss_sil_at_max_speech and possible_ends:
                prev_end, dur = max(possible_ends, key=lambda x: x[1])
                current_speech['end'] = prev_end
                speeches.append(current_speech)
                current_speech = {}
                next_start = prev_end + dur

                if next_start < prev_end + cur_sample:
                    current_speech['start'] = next_start
                else:
                    triggered = False
                prev_end = next_start = temp_end = 0
                possible_ends = []
            else:
                if prev_end:
                    current_speech['end'] = prev_end
                    speeches.append(current_speech)
                    current_speech = {}
                    if next_start < prev_end:
                        triggered = False
                    else:
                        current_speech['start'] = next_start
                    prev_end = next_start = temp_end = 0
                    possible_ends = []
                else:
                    current_speech['end'] = cur_sample
                    speeches.append(current_speech)
                    current_speech = {}
                    prev_end = next_start = temp_end = 0
                    triggered = False
                    possible_ends = []
                    continue

        if (speech_prob < neg_threshold) and triggered:
            if not temp_end:
                temp_end = cur_sample
            sil_dur_now = cur_sample - temp_end

            if not use_max_poss_sil_at_max_speech and sil_dur_now > min_silence_samples_at_max_speech:
                prev_end = temp_end

            if sil_dur_now < min_silence_samples:
                continue
            else:
                current_speech['end'] = temp_end
                if (current_speech['end'] - current_speech['start']) > min_speech_samples:
                    speeches.append(current_speech)
                current_speech = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                possible_ends = []
                continue

    if current_speech and (audio_length_samples - current_speech['start']) > min_speech_samples:
        current_speech['end'] = audio_length_samples
        speeches.append(current_speech)

    for i, speech in enumerate(speeches):
        if i == 0:
            speech['start'] = int(max(0, speech['start'] - speech_pad_samples))
        if i != len(speeches) - 1:
            silence_duration = speeches[i+1]['start'] - speech['end']
            if silence_duration < 2 * speech_pad_samples:
                speech['end'] += int(silence_duration // 2)
                speeches[i+1]['start'] = int(max(0, speeches[i+1]['start'] - silence_duration // 2))
            else:
                speech['end'] = int(min(audio_length_samples, speech['end'] + speech_pad_samples))
                speeches[i+1]['start'] = int(max(0, speeches[i+1]['start'] - speech_pad_samples))
        else:
            speech['end'] = int(min(audio_length_samples, speech['end'] + speech_pad_samples))

    if return_seconds:
        audio_length_seconds = audio_length_samples / sampling_rate
        for speech_dict in speeches:
            speech_dict['start'] = max(round(speech_dict['start'] / sampling_rate, time_resolution), 0)
            speech_dict['end'] = min(round(speech_dict['end'] / sampling_rate, time_resolution), audio_length_seconds)
    elif step > 1:
        for speech_dict in speeches:
            speech_dict['start'] *= step
            speech_dict['end'] *= step
    return speeches


def read_wav(path):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit("%s: expected mono 16-bit PCM" % path)
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0, rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wav")
    ap.add_argument("--model", default="models/silero_vad/model.onnx")
    ap.add_argument("--param", action="append", default=[],
                    help="name=value, a get_speech_timestamps parameter (JSON value)")
    args = ap.parse_args()
    audio, rate = read_wav(args.wav)
    if rate not in (8000, 16000):
        sys.exit("%s: %d Hz; the reference needs 8000 or 16000" % (args.wav, rate))
    params = {}
    for p in args.param:
        name, value = p.split("=", 1)
        params[name] = json.loads(value)
    speeches = get_speech_timestamps(audio, OnnxWrapper(args.model), sampling_rate=rate,
                                     return_seconds=True, time_resolution=3, **params)
    print(json.dumps({"segments": speeches, "duration": round(len(audio) / rate, 3),
                      "sample_rate": rate}))


if __name__ == "__main__":
    main()
