"""Binary tensors of every datatype: through the served models end to end, and the framing itself."""

from __future__ import annotations

import numpy as np
import pytest

import inferq
from inferq import tensors


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp64_int32_int64_scalar_and_bool_come_back_exactly(client: inferq.Client, binary: bool) -> None:
    x = {
        "f64": np.array([[1.0 / 3.0, -2.5e300], [np.pi, -0.0]], np.float64),
        "i32": np.array([[2**31 - 2, -(2**31)], [0, 41]], np.int32),
        "i64s": np.array(2**61, np.int64),
        "flag": np.array([[True, False], [False, True]]),
    }
    out = client.submit("dtypes", x, binary=binary).result(timeout=60)
    assert out["f64_out"].dtype == np.float64
    np.testing.assert_array_equal(out["f64_out"], x["f64"] * 2)
    assert out["i32_out"].dtype == np.int32
    np.testing.assert_array_equal(out["i32_out"], x["i32"] + 1)
    assert out["i64_out"].dtype == np.int64 and out["i64_out"].shape == ()
    assert int(out["i64_out"]) == 3 * 2**61
    assert out["flag_out"].dtype == np.bool_
    np.testing.assert_array_equal(out["flag_out"], ~x["flag"])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp16_is_computed_and_returned_in_half_precision(client: inferq.Client, binary: bool) -> None:
    x = np.array([[0.1, -3.0, 1000.0, 65504.0 / 4]], np.float16)
    out = client.submit("half", {"x": x}, binary=binary).result(timeout=60)["y"]
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, x * np.float16(2) + np.float16(1))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_bytes_tensors_go_as_strings_or_bytes_and_come_back_as_bytes(client: inferq.Client, binary: bool) -> None:
    x = np.array(["hello", "", "inferq 2 go", "MiXeD"], dtype=object)
    out = client.submit("strings", {"s": x}, binary=binary).result(timeout=60)["upper"]
    assert out.dtype == object and out.shape == (4,)
    assert out.tolist() == [b"HELLO", b"", b"INFERQ 2 GO", b"MIXED"]
    as_bytes = np.array([b"abc", b"x"], dtype=object)
    assert client.submit("strings", {"s": as_bytes}).result(timeout=60)["upper"].tolist() == [b"ABC", b"X"]


def test_a_datatype_the_model_does_not_take_is_refused_by_name(client: inferq.Client) -> None:
    with pytest.raises(inferq.ValidationError) as e:
        client.submit("linear", {"x": np.ones((1, 4), np.int8)})
    assert e.value.code == "datatype_mismatch"
    assert "INT8" in e.value.message


ALL = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([0, 255], np.uint8),
    "UINT16": np.array([0, 65535], np.uint16),
    "UINT32": np.array([0, 2**32 - 1], np.uint32),
    "UINT64": np.array([0, 2**64 - 1], np.uint64),
    "INT8": np.array([-128, 127], np.int8),
    "INT16": np.array([-(2**15), 2**15 - 1], np.int16),
    "INT32": np.array([-(2**31), 2**31 - 1], np.int32),
    "INT64": np.array([-(2**63), 2**63 - 1], np.int64),
    "FP16": np.array([0.5, -65504.0, np.inf], np.float16),
    "FP32": np.array([[1e-38, -3.4e38], [np.nan, 0.0]], np.float32),
    "FP64": np.array([1e-308, np.e], np.float64),
    "BYTES": np.array(["é", "", "x" * 300], dtype=object),
}


@pytest.mark.parametrize("datatype", sorted(ALL))
def test_every_datatype_round_trips_through_the_framing(datatype: str) -> None:
    array = ALL[datatype]
    assert tensors.datatype_of(array) == datatype
    raw = tensors.encode_raw(array, datatype)
    back = tensors.decode_raw(raw, datatype, list(array.shape))
    if datatype == "BYTES":
        assert back.tolist() == [s.encode() for s in array.ravel()]
        assert raw[:4] == len("é".encode()).to_bytes(4, "little")
    else:
        assert back.dtype == array.dtype
        np.testing.assert_array_equal(back, array)
        assert len(raw) == array.size * array.dtype.itemsize
    j = tensors.to_array(tensors.from_array("t", array))
    if datatype != "BYTES":
        np.testing.assert_array_equal(j, array)


def test_bf16_is_rounded_to_nearest_even_and_widened_exactly() -> None:
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, np.inf], np.float32)
    raw = tensors.encode_raw(x, "BF16")
    assert len(raw) == 2 * x.size
    back = tensors.decode_raw(raw, "BF16", [5])
    # 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to even (1.0); 1 + 3·2^-8 rounds up.
    np.testing.assert_array_equal(back, np.array([1.0, 1.0, 1.015625, -2.5, np.inf], np.float32))
    t = inferq.Tensor(x, "BF16")
    content, n = tensors.encode_binary_request({"model": "m"}, {"x": t})
    assert b'"datatype":"BF16"' in content[:n] and content[n:] == raw
