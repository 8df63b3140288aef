"""ONNX Runtime's own tight loop, the reference `inferq-bench`'s raw loop must match: `run` on an
input made once, one intra-op thread per process, N processes at once; prints rows per second
summed over the processes.

    .venv-test/bin/python scripts/raw_loop.py bench-models/mlp_large/model.onnx --batch 32
"""

import argparse
import multiprocessing as mp
import time

import numpy as np
import onnxruntime as ort


def loop(path: str, batch: int, secs: float, out: "mp.Queue[float]") -> None:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    width = inp.shape[-1]
    x = np.random.default_rng(0).uniform(-1, 1, (batch, width)).astype(np.float32)
    feed = {inp.name: x}
    session.run(None, feed)
    rows, start = 0, time.perf_counter()
    while time.perf_counter() - start < secs:
        session.run(None, feed)
        rows += batch
    out.put(rows / (time.perf_counter() - start))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--secs", type=float, default=3.0)
    a = p.parse_args()
    out: "mp.Queue[float]" = mp.Queue()
    procs = [mp.Process(target=loop, args=(a.model, a.batch, a.secs, out)) for _ in range(a.procs)]
    for proc in procs:
        proc.start()
    rates = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    print(f"batch {a.batch}, {a.procs} process(es) x 1 thread: {sum(rates):.0f} rows/s")


if __name__ == "__main__":
    main()
