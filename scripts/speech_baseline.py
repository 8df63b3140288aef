#!/usr/bin/env python3
"""The speech benchmark's baseline: what a Python service does with one recording, a
single-stream loop of Silero VAD in the onnxruntime Python package (the silero-vad package's
OnnxWrapper and get_speech_timestamps, ported to numpy in speech_reference.py, one intra-op
thread). Prints {"audio_seconds", "wall_seconds", "segments"} for a 16 kHz mono 16-bit WAV.

Usage: speech_baseline.py FILE.wav [--model models/silero_vad/model.onnx]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speech_reference import OnnxWrapper, get_speech_timestamps, read_wav  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wav")
    ap.add_argument("--model", default="models/silero_vad/model.onnx")
    args = ap.parse_args()
    audio, rate = read_wav(args.wav)
    model = OnnxWrapper(args.model)
    start = time.perf_counter()
    speeches = get_speech_timestamps(audio, model, sampling_rate=rate)
    wall = time.perf_counter() - start
    print(json.dumps({"audio_seconds": len(audio) / rate, "wall_seconds": wall,
                      "segments": len(speeches)}))


if __name__ == "__main__":
    main()
