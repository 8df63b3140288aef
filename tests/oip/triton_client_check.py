#!/usr/bin/env python3
"""Drives inferq's Open Inference Protocol routes with the unmodified NVIDIA Triton client
(tritonclient[http] from PyPI), the way a Triton user would: health, metadata, `infer` with the
client's defaults (binary in, binary out), with JSON both ways, mixed, and `async_infer` over
several connections. Checks the `linear` test model's outputs against y = x.W + b.

Usage: triton_client_check.py <host:port>   (exits non-zero with a message on any mismatch)
"""
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

URL = sys.argv[1]
# The committed test model: W[i][j] = 0.1 * (3i + j + 1), b = [0.5, -0.5, 1.0].
W = np.array([[0.1 * (3 * i + j + 1) for j in range(3)] for i in range(4)], dtype=np.float64)
B = np.array([0.5, -0.5, 1.0])


def expected(x):
    return x.astype(np.float64) @ W + B


def check(got, x, what):
    want = expected(x)
    if got is None or got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
        sys.exit(f"{what}: got {got!r}, want {want!r}")


client = httpclient.InferenceServerClient(url=URL)
assert client.is_server_live(), "server not live"
assert client.is_server_ready(), "server not ready"
assert client.is_model_ready("linear"), "linear not ready"
assert client.is_model_ready("linear", "1"), "linear version 1 not ready"
assert not client.is_model_ready("no_such_model"), "an unknown model is ready"
meta = client.get_server_metadata()
assert "binary_tensor_data" in meta["extensions"], meta
model = client.get_model_metadata("linear")
assert model["name"] == "linear" and model["inputs"][0]["shape"] == [-1, 4], model

x = np.arange(8, dtype=np.float32).reshape(2, 4) / 7.0


def inputs(binary):
    t = httpclient.InferInput("x", list(x.shape), "FP32")
    t.set_data_from_numpy(x, binary_data=binary)
    return [t]


# The client's defaults: binary input, no outputs listed (so all outputs, binary).
r = client.infer("linear", inputs(True), request_id="req-1")
check(r.as_numpy("y"), x, "binary in, binary out")
resp = r.get_response()
assert resp["model_name"] == "linear" and resp["id"] == "req-1", resp
# JSON both ways.
out = [httpclient.InferRequestedOutput("y", binary_data=False)]
r = client.infer("linear", inputs(False), outputs=out, model_version="1")
check(r.as_numpy("y"), x, "JSON in, JSON out")
assert "data" in r.get_response()["outputs"][0], r.get_response()
# Mixed: JSON in, binary out, and binary in, JSON out.
r = client.infer("linear", inputs(False), outputs=[httpclient.InferRequestedOutput("y")])
check(r.as_numpy("y"), x, "JSON in, binary out")
r = client.infer("linear", inputs(True), outputs=out)
check(r.as_numpy("y"), x, "binary in, JSON out")

# Errors arrive as the client's exception with the server's message.
for bad, status in [
    (lambda: client.infer("no_such_model", inputs(True)), "404"),
    (lambda: client.infer("linear", [httpclient.InferInput("z", [1, 4], "FP32").set_data_from_numpy(np.zeros((1, 4), np.float32))]), "400"),
    (lambda: client.infer("linear", inputs(True), model_version="7"), "404"),
]:
    try:
        bad()
    except InferenceServerException as e:
        assert e.status() == status and e.message(), (e.status(), e.message())
    else:
        sys.exit(f"expected an error {status}")

# async_infer over several connections: every answer belongs to its own request.
pool = httpclient.InferenceServerClient(url=URL, concurrency=4)
xs = [np.full((1, 4), i, dtype=np.float32) for i in range(40)]
pending = []
for xi in xs:
    t = httpclient.InferInput("x", [1, 4], "FP32")
    t.set_data_from_numpy(xi)
    pending.append(pool.async_infer("linear", [t]))
for xi, p in zip(xs, pending):
    check(p.get_result().as_numpy("y"), xi, "async_infer")
pool.close()

# --- FP16 and BYTES: the `half` (y = x * 2 + 1 in FP16) and `strings` (upper-case) test models ---
assert client.is_model_ready("half") and client.is_model_ready("strings"), "half / strings not ready"
xh = np.array([[1, 0.1, -2.5, 1000], [0, 30000, -1, 0.5]], dtype=np.float16)
want_h = xh * np.float16(2) + np.float16(1)
strs = np.array([b"hello", b"World 1", b"", "\u00e9a".encode()], dtype=np.object_)
want_s = [b"HELLO", b"WORLD 1", b"", "\u00c9A".encode()]
for binary in (True, False):
    # binary=True: the client's defaults (binary in, no outputs listed so all binary out).
    outputs = None if binary else [httpclient.InferRequestedOutput("y", binary_data=False)]
    t = httpclient.InferInput("x", list(xh.shape), "FP16")
    t.set_data_from_numpy(xh, binary_data=binary)
    y = client.infer("half", [t], outputs=outputs).as_numpy("y")
    if y is None or y.dtype != np.float16 or not np.array_equal(y, want_h):
        sys.exit(f"half (binary={binary}): got {y!r}, want {want_h!r}")
    outputs = None if binary else [httpclient.InferRequestedOutput("upper", binary_data=False)]
    t = httpclient.InferInput("s", [len(strs)], "BYTES")
    t.set_data_from_numpy(strs, binary_data=binary)
    got = client.infer("strings", [t], outputs=outputs).as_numpy("upper")
    # Binary BYTES come back as bytes objects, JSON ones as str.
    got = None if got is None else [g if isinstance(g, bytes) else g.encode() for g in got.tolist()]
    if got != want_s:
        sys.exit(f"strings (binary={binary}): got {got!r}, want {want_s!r}")

client.close()
print("triton client: all checks passed")
