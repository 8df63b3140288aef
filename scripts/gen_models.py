#!/usr/bin/env python3
"""Generate inferq's small ONNX test models (and the large benchmark MLP) deterministically.

Needs python packages `onnx` and `numpy`; `--verify` also needs `onnxruntime` (runs every
generated model on a sample input, checks the outputs against numpy, times the slow model).

  python3 scripts/gen_models.py                      # -> tests/models/{linear,dtypes,mlp_small,slow,half,strings}
  python3 scripts/gen_models.py --verify             # ... and check them with onnxruntime
  python3 scripts/gen_models.py --out bench-models --large --only mlp_large

All models: opset 17, IR version 8, dynamic leading dimension named "batch" where batched.
Weights come from numpy.random.default_rng(seed), so the same onnx/numpy give identical bytes.
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PRODUCER = "inferq scripts/gen_models.py"

# slow: number of chained 512x512 MatMuls; ~0.5-1 s per run on one intra-op thread (see --verify).
SLOW_DIM = 512
SLOW_MATMULS = 240

LINEAR_W = np.array([[0.1 * (3 * i + j + 1) for j in range(3)] for i in range(4)], dtype=np.float32)
LINEAR_B = np.array([0.5, -0.5, 1.0], dtype=np.float32)


def save(model, out_dir, name, toml=None):
    model.ir_version = IR_VERSION
    model.producer_name = PRODUCER
    onnx.checker.check_model(model, full_check=True)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    onnx.save(model, path)
    print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))
    if toml is not None:
        tpath = os.path.join(d, "model.toml")
        with open(tpath, "w") as f:
            f.write(toml)
        print("wrote %s" % tpath)
    return path


def make_model(nodes, name, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def linear():
    """y = x @ W + b, x [batch,4] -> y [batch,3]."""
    return make_model(
        [helper.make_node("MatMul", ["x", "W"], ["xW"]), helper.make_node("Add", ["xW", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(LINEAR_W, "W"), numpy_helper.from_array(LINEAR_B, "b")],
    )


def dtypes():
    """One op per datatype: FP64 *2, INT32 +1, INT64 scalar *3, BOOL Not."""
    vi = helper.make_tensor_value_info
    return make_model(
        [
            helper.make_node("Mul", ["f64", "two_f64"], ["f64_out"]),
            helper.make_node("Add", ["i32", "one_i32"], ["i32_out"]),
            helper.make_node("Mul", ["i64s", "three_i64"], ["i64_out"]),
            helper.make_node("Not", ["flag"], ["flag_out"]),
        ],
        "dtypes",
        [
            vi("f64", TensorProto.DOUBLE, ["batch", 2]),
            vi("i32", TensorProto.INT32, ["batch", 2]),
            vi("i64s", TensorProto.INT64, []),
            vi("flag", TensorProto.BOOL, ["batch", 2]),
        ],
        [
            vi("f64_out", TensorProto.DOUBLE, ["batch", 2]),
            vi("i32_out", TensorProto.INT32, ["batch", 2]),
            vi("i64_out", TensorProto.INT64, []),
            vi("flag_out", TensorProto.BOOL, ["batch", 2]),
        ],
        [
            numpy_helper.from_array(np.array(2.0, dtype=np.float64), "two_f64"),
            numpy_helper.from_array(np.array(1, dtype=np.int32), "one_i32"),
            numpy_helper.from_array(np.array(3, dtype=np.int64), "three_i64"),
        ],
    )


def half():
    """y = x * 2 + 1 in FP16 (IEEE half), x [batch,4] -> y [batch,4]."""
    return make_model(
        [helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Add", ["x2", "one"], ["y"])],
        "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 4])],
        [
            numpy_helper.from_array(np.array(2.0, dtype=np.float16), "two"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float16), "one"),
        ],
    )


def strings():
    """BYTES (ONNX string) s [batch] -> upper [batch], each string upper-cased (StringNormalizer).

    locale C.UTF-8: ONNX Runtime refuses to load the model when the locale is not installed, and
    the default (en_US.UTF-8) often is not (slim containers); glibc has C.UTF-8 built in.
    """
    return make_model(
        [helper.make_node("StringNormalizer", ["s"], ["upper"], case_change_action="UPPER", locale="C.UTF-8")],
        "strings",
        [helper.make_tensor_value_info("s", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("upper", TensorProto.STRING, ["batch"])],
    )


def mlp_weights(sizes, seed):
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        layers.append((w, b))
    return layers


def mlp(name, sizes, seed=0):
    """x [batch, sizes[0]] -> Gemm+Relu ... -> Gemm -> logits [batch, sizes[-1]]."""
    layers = mlp_weights(sizes, seed)
    nodes, inits = [], []
    cur = "x"
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w, "w%d" % i), numpy_helper.from_array(b, "b%d" % i)]
        last = i == len(layers) - 1
        out = "logits" if last else "h%d" % i
        nodes.append(helper.make_node("Gemm", [cur, "w%d" % i, "b%d" % i], [out if last else out + "_pre"]))
        if not last:
            nodes.append(helper.make_node("Relu", [out + "_pre"], [out]))
        cur = out
    return make_model(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits,
    )


def mlp_forward(x, layers):
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h


def slow(matmuls=SLOW_MATMULS, dim=SLOW_DIM):
    """y = x + 1, plus 0 * (a chain of `matmuls` [dim,dim] MatMuls that depends on x).

    The heavy part starts from Tanh(ReduceSum(x)) so constant folding cannot remove it, and every
    MatMul is by the all-1/dim matrix W (an average), so values stay bounded (no inf * 0 = NaN).
    Its cost does not depend on the batch size.
    """
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=1),          # [1,1]
        helper.make_node("Tanh", ["s"], ["t"]),
        helper.make_node("Expand", ["t", "square"], ["m0"]),              # [dim,dim]
        helper.make_node("Expand", ["inv_dim", "square"], ["W"]),         # [dim,dim], folded by ORT
    ]
    cur = "m0"
    for k in range(matmuls):
        nxt = "m%d" % (k + 1)
        nodes.append(helper.make_node("MatMul", [cur, "W"], [nxt]))
        cur = nxt
    nodes += [
        helper.make_node("ReduceSum", [cur], ["heavy"], keepdims=1),     # [1,1]
        helper.make_node("Mul", ["heavy", "zero"], ["nothing"]),
        helper.make_node("Add", ["x", "one"], ["x1"]),
        helper.make_node("Add", ["x1", "nothing"], ["y"]),
    ]
    return make_model(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(np.array([dim, dim], dtype=np.int64), "square"),
            numpy_helper.from_array(np.array(1.0 / dim, dtype=np.float32), "inv_dim"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        ],
    )


MLP_SMALL = [64, 256, 256, 10]
MLP_LARGE = [1024, 2048, 2048, 10]

GENERATORS = {
    "linear": (lambda: linear(), None),
    "dtypes": (lambda: dtypes(), None),
    "half": (lambda: half(), None),
    "strings": (lambda: strings(), None),
    "mlp_small": (lambda: mlp("mlp_small", MLP_SMALL),
                  'description = "64-256-256-10 MLP (test and benchmark model)"\n'),
    "slow": (lambda: slow(),
             'description = "y = x + 1, slowly (~0.5-1 s of CPU per run; for lease and crash tests)"\n'
             "batching = false\n"),
    "mlp_large": (lambda: mlp("mlp_large", MLP_LARGE),
                  'description = "1024-2048-2048-10 MLP (benchmark model, 25 MB)"\n'),
}
SMALL = ["linear", "dtypes", "mlp_small", "slow", "half", "strings"]


# --- verification with onnxruntime -----------------------------------------------------------
def session(path, threads=1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def describe(sess):
    for i in sess.get_inputs():
        print("    input  %-6s %-16s %s" % (i.name, i.type, i.shape))
    for o in sess.get_outputs():
        print("    output %-6s %-16s %s" % (o.name, o.type, o.shape))


def verify(name, path):
    import time

    sess = session(path)
    print("  %s:" % name)
    describe(sess)
    if name == "linear":
        x = np.array([[1, 2, 3, 4], [0, 0, 0, 0], [-1, 0.5, 2, 0]], dtype=np.float32)
        (y,) = sess.run(None, {"x": x})
        print("    x=%s -> y=%s" % (x.tolist(), y.tolist()))
        assert y.shape == (3, 3) and np.allclose(y, x @ LINEAR_W + LINEAR_B, atol=1e-5)
        assert np.allclose(y[0], [7.5, 7.5, 10.0], atol=1e-5), y[0]  # by hand: [7, 8, 9] + b
    elif name == "dtypes":
        feeds = {
            "f64": np.array([[1.5, -2.0], [0.25, 1e300]], dtype=np.float64),
            "i32": np.array([[1, -1], [2147483646, 0]], dtype=np.int32),
            "i64s": np.array(7, dtype=np.int64),
            "flag": np.array([[True, False], [False, False]]),
        }
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        for k, v in out.items():
            print("    %s = %s (%s, shape %s)" % (k, v.tolist(), v.dtype, list(v.shape)))
        assert out["f64_out"].dtype == np.float64 and np.array_equal(out["f64_out"], feeds["f64"] * 2)
        assert out["i32_out"].dtype == np.int32 and np.array_equal(out["i32_out"], feeds["i32"] + 1)
        assert out["i64_out"].dtype == np.int64 and out["i64_out"].shape == () and int(out["i64_out"]) == 21
        assert out["flag_out"].dtype == np.bool_ and np.array_equal(out["flag_out"], ~feeds["flag"])
    elif name == "half":
        x = np.array([[1, 0.1, -2.5, 1000], [0, 1e-7, -1, 30000]], dtype=np.float16)
        (y,) = sess.run(None, {"x": x})
        print("    x=%s -> y=%s" % (x.tolist(), y.tolist()))
        assert y.dtype == np.float16 and np.array_equal(y, x * np.float16(2) + np.float16(1)), y
    elif name == "strings":
        s = np.array(["hello", "World 1", "", "éa"], dtype=object)
        (upper,) = sess.run(None, {"s": s})
        print("    s=%s -> upper=%s" % (s.tolist(), upper.tolist()))
        assert upper.tolist() == ["HELLO", "WORLD 1", "", "ÉA"], upper
    elif name in ("mlp_small", "mlp_large"):
        sizes = MLP_SMALL if name == "mlp_small" else MLP_LARGE
        x = np.random.default_rng(1).standard_normal((4, sizes[0])).astype(np.float32)
        (y,) = sess.run(None, {"x": x})
        ref = mlp_forward(x, mlp_weights(sizes, 0))
        print("    logits[0] = %s" % np.round(y[0], 4).tolist())
        assert y.shape == (4, sizes[-1]) and np.allclose(y, ref, atol=1e-3, rtol=1e-3)
    elif name == "slow":
        x = np.array([[1.0], [-2.5], [1e6]], dtype=np.float32)
        (y,) = sess.run(None, {"x": x})
        print("    x=%s -> y=%s" % (x.ravel().tolist(), y.ravel().tolist()))
        assert np.array_equal(y, x + 1), y
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            sess.run(None, {"x": np.array([[0.5]], dtype=np.float32)})
            times.append(time.perf_counter() - t0)
        print("    per run (intra_op_num_threads=1): median %.3f s, min %.3f s, max %.3f s"
              % (sorted(times)[2], min(times), max(times)))
    print("    ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/models", help="output directory (default: %(default)s)")
    ap.add_argument("--large", action="store_true", help="also generate mlp_large (25 MB, 1024-2048-2048-10)")
    ap.add_argument("--only", help="comma-separated model names to generate (from: %s)" % ", ".join(GENERATORS))
    ap.add_argument("--verify", action="store_true", help="run each model with onnxruntime and check it")
    args = ap.parse_args()

    names = SMALL + (["mlp_large"] if args.large else [])
    if args.only:
        only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in only if n not in GENERATORS]
        if unknown:
            ap.error("unknown model(s): %s" % ", ".join(unknown))
        if "mlp_large" in only and not args.large:
            ap.error("mlp_large needs --large")
        names = only

    written = []
    for name in names:
        build, toml = GENERATORS[name]
        written.append((name, save(build(), args.out, name, toml)))
    if args.verify:
        print("verifying with onnxruntime:")
        for name, path in written:
            verify(name, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
