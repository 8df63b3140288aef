#!/usr/bin/env python3
"""Recompute the Silero VAD reference values in the integration test with onnxruntime (Python).

tests/tests/it/jobs.rs::silero_vad_returns_a_probability_and_its_state submits two 512-sample
chunks (a 440 Hz tone at 16 kHz, and silence) with a zero state and sr = 16000 to
models/silero_vad/model.onnx, and compares the job's outputs with values this script printed:
the speech probability `output` in full and, for `stateN` ([2, 1, 128]), the sum, the sum of
absolute values and a few elements at fixed flat indices.

It builds exactly the same f32 input as the Rust test: the tone is
    0.5 * sinf(((2 * PI_f32) * 440) * (i as f32) / 16000)
with every operation in f32, left to right, and sinf taken from the C library (glibc's libm),
which is what Rust's f32::sin calls on Linux. It then runs the model with onnxruntime's
InferenceSession on the CPUExecutionProvider, full graph optimization and one intra-op thread,
as the worker does with its default settings.

Needs numpy and the onnxruntime version that scripts/fetch_assets.py pins (1.31.1), e.g. in a
throwaway virtualenv (not part of scripts/setup.sh):
    python3 -m venv /tmp/silero-venv
    /tmp/silero-venv/bin/pip install onnxruntime==1.31.1 numpy
    /tmp/silero-venv/bin/python scripts/silero_reference.py [--model models/silero_vad/model.onnx]
"""
import argparse
import ctypes
import ctypes.util
import os
import sys

import numpy as np
import onnxruntime as ort

PINNED_ORT = "1.31.1"
N = 512
SR = 16000
# Flat indices into stateN ([2, 1, 128], row-major) printed and checked by the test: spread over
# both halves, mostly where the state is not saturated at 0 or +-1 or where tone and silence differ.
STATE_INDICES = [0, 40, 89, 116, 128, 168, 171, 188, 217, 244, 253]


def c_sinf():
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    f = libm.sinf
    f.argtypes = [ctypes.c_float]
    f.restype = ctypes.c_float
    return f


def tone():
    """The test's tone, bit for bit: every step rounded to f32 like the Rust expression."""
    sinf = c_sinf()
    f32 = np.float32
    i = np.arange(N, dtype=np.float32)
    arg = f32(2.0) * f32(np.pi)  # std::f32::consts::PI, exact doubling
    arg = arg * f32(440.0)
    arg = arg * i  # float32 array: each product rounded to f32
    arg = arg / f32(16000.0)
    assert arg.dtype == np.float32
    s = np.array([sinf(float(a)) for a in arg], dtype=np.float32)  # c_float result is exact f32
    out = f32(0.5) * s
    assert out.dtype == np.float32
    # How far a portable sin would be off (informational; the test builds its input with sinf).
    via_f64 = (f32(0.5) * np.sin(arg.astype(np.float64)).astype(np.float32)).astype(np.float32)
    differ = int(np.count_nonzero(via_f64 != out))
    return out, differ


def run(session, samples):
    feeds = {
        "input": samples.reshape(1, N).astype(np.float32),
        "state": np.zeros((2, 1, 128), dtype=np.float32),
        "sr": np.array(SR, dtype=np.int64),
    }
    prob, state = session.run(["output", "stateN"], feeds)
    assert prob.shape == (1, 1), prob.shape
    assert state.shape == (2, 1, 128), state.shape
    return prob.astype(np.float32), state.astype(np.float32)


def g(x):
    """9 significant digits (enough to read back the same f32), written as a Rust f64 literal."""
    s = "%.9g" % float(x)
    return s if any(c in s for c in ".e") else s + ".0"


def summary(state):
    flat = [float(v) for v in state.reshape(-1)]  # f32 -> f64 exactly, as serde_json gives them
    total = 0.0
    abs_total = 0.0
    for v in flat:  # sequential f64 sums, like the Rust test's iterator sums
        total += v
        abs_total += abs(v)
    return total, abs_total, [flat[i] for i in STATE_INDICES]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(root, "models", "silero_vad", "model.onnx"))
    ap.add_argument("--full", action="store_true", help="also print all 256 stateN values")
    args = ap.parse_args()

    if ort.__version__ != PINNED_ORT:
        print("warning: onnxruntime %s, but the project pins %s" % (ort.__version__, PINNED_ORT),
              file=sys.stderr)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, sess_options=opts, providers=["CPUExecutionProvider"])

    tone_samples, differ = tone()
    cases = [("TONE", tone_samples), ("SILENCE", np.zeros(N, dtype=np.float32))]

    print("// onnxruntime %s (Python), numpy %s, model %s" % (ort.__version__, np.__version__, args.model))
    print("// tone: %d of %d samples differ if sin is taken in f64 instead of sinf" % (differ, N))
    print("// stateN flat indices: %s" % STATE_INDICES)
    for name, samples in cases:
        prob, state = run(session, samples)
        total, abs_total, picked = summary(state)
        print("%s: output = %s" % (name, g(prob[0, 0])))
        print("%s: stateN sum = %s, sum |.| = %s" % (name, g(total), g(abs_total)))
        print("%s: stateN[%s] = [%s]" % (name, ", ".join(map(str, STATE_INDICES)),
                                         ", ".join(g(v) for v in picked)))
        if args.full:
            print("%s: stateN = [%s]" % (name, ", ".join(g(v) for v in state.reshape(-1))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
