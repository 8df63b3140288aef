"""numpy arrays to and from the Open Inference Protocol tensor forms: JSON, and the binary framing.

The binary framing (docs/api.md, "Binary tensors"): a JSON part whose tensors carry
``"parameters": {"binary_data_size": n}`` instead of ``data``, then each tensor's raw
little-endian bytes in order; ``Inference-Header-Content-Length`` gives the JSON part's length.
BOOL is one byte per element, BYTES is a u32 little-endian length then the bytes, per element.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Mapping, Union

import numpy as np

__all__ = ["Tensor", "DATATYPES", "datatype_of", "to_array", "from_array"]

#: Datatype name → numpy dtype (little-endian). BF16 has no numpy type: it is carried as float32
#: (rounded to bfloat16 on the way in, widened exactly on the way out). BYTES is an object array.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<f4"),
    "BYTES": np.dtype(object),
}



@dataclass(frozen=True)
class Tensor:
    """An input with an explicit datatype, for when the array's dtype does not say it.

    ``Tensor(np.array([0.5, 1.5], np.float32), "BF16")`` sends bfloat16; a plain array is sent
    with the datatype of its dtype (``float16`` → FP16, ``object``/``str``/``bytes`` → BYTES).
    """

    data: Any
    datatype: str


TensorLike = Union[np.ndarray, Tensor, Any]


def datatype_of(array: np.ndarray) -> str:
    """The Open Inference Protocol datatype of a numpy array (``ValueError`` if it has none)."""
    dt = array.dtype
    if dt.kind in "OSU":
        return "BYTES"
    if dt.kind == "b":
        return "BOOL"
    key = dt.newbyteorder("<") if dt.byteorder == ">" else dt
    for name, want in DATATYPES.items():
        if name not in ("BF16", "BYTES", "BOOL") and want == key:
            return name
    raise ValueError(f"numpy dtype {dt} has no inferq datatype")


def _as_array(value: TensorLike) -> tuple[np.ndarray, str]:
    if isinstance(value, Tensor):
        datatype = value.datatype.upper()
        if datatype not in DATATYPES:
            raise ValueError(f"unknown datatype {value.datatype!r}")
        if datatype == "BYTES":
            return np.asarray(value.data, dtype=object), datatype
        return np.asarray(value.data, dtype=DATATYPES[datatype]), datatype
    array = np.asarray(value)
    return array, datatype_of(array)


def _bytes_element(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, (str, np.str_)):
        return str(item).encode("utf-8")
    raise TypeError(f"a BYTES element must be bytes or str, not {type(item).__name__}")


def _bf16_bits(array: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bits, rounded to nearest even (NaN kept a quiet NaN)."""
    bits = np.ascontiguousarray(array, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(array)
    rounded = np.where(nan, (bits >> 16) | 0x40, rounded)
    return rounded.astype("<u2")


def encode_raw(array: np.ndarray, datatype: str) -> bytes:
    """The tensor's raw bytes as the binary framing carries them."""
    if datatype == "BYTES":
        out = bytearray()
        for item in array.reshape(-1):
            b = _bytes_element(item)
            out += struct.pack("<I", len(b)) + b
        return bytes(out)
    if datatype == "BF16":
        return _bf16_bits(array).tobytes()
    if datatype == "BOOL":
        return np.ascontiguousarray(array, dtype=np.bool_).view(np.uint8).tobytes()
    return np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes()


def decode_raw(raw: bytes, datatype: str, shape: list[int]) -> np.ndarray:
    """The array a tensor's raw bytes stand for (BYTES elements come back as ``bytes``)."""
    datatype = datatype.upper()
    if datatype == "BYTES":
        items: list[bytes] = []
        pos = 0
        while pos < len(raw):
            (n,) = struct.unpack_from("<I", raw, pos)
            items.append(bytes(raw[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(shape)
    if datatype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
        return bits.view("<f4").reshape(shape)
    if datatype == "BOOL":
        return np.frombuffer(raw, dtype=np.uint8).astype(np.bool_).reshape(shape)
    if datatype not in DATATYPES:
        raise ValueError(f"unknown datatype {datatype!r}")
    return np.frombuffer(raw, dtype=DATATYPES[datatype]).reshape(shape).copy()


def _json_number(x: float) -> Any:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def from_array(name: str, value: TensorLike) -> dict[str, Any]:
    """A JSON tensor (``{"name", "shape", "datatype", "data"}``) for a numpy array or :class:`Tensor`."""
    array, datatype = _as_array(value)
    flat = array.reshape(-1)
    if datatype == "BYTES":
        data: list[Any] = [_bytes_element(x).decode("utf-8") for x in flat]
    elif datatype in ("FP16", "FP32", "FP64", "BF16"):
        data = [_json_number(float(x)) for x in flat]
    elif datatype == "BOOL":
        data = [bool(x) for x in flat]
    else:
        data = [int(x) for x in flat]
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def _float_of(x: Any) -> float:
    if isinstance(x, str):
        return float({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}.get(x, x))
    return float(x)


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item))
        return out
    return [data]


def to_array(tensor: Mapping[str, Any]) -> np.ndarray:
    """The numpy array a JSON tensor stands for (FP16 as float16, BF16 as float32, BYTES as bytes)."""
    datatype = str(tensor["datatype"]).upper()
    shape = list(tensor["shape"])
    flat = _flatten(tensor.get("data", []))
    if datatype == "BYTES":
        out = np.empty(len(flat), dtype=object)
        out[:] = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in flat]
        return out.reshape(shape)
    if datatype in ("FP16", "FP32", "FP64", "BF16"):
        return np.array([_float_of(x) for x in flat], dtype=DATATYPES[datatype]).reshape(shape)
    return np.array(flat, dtype=DATATYPES[datatype]).reshape(shape)


def encode_binary_request(body: dict[str, Any], inputs: Mapping[str, TensorLike]) -> tuple[bytes, int]:
    """The binary framing of a job request: ``(content, json_length)``.

    ``body`` is the request without its ``inputs``; every input goes as raw bytes.
    """
    descriptors = []
    chunks = []
    for name, value in inputs.items():
        array, datatype = _as_array(value)
        raw = encode_raw(array, datatype)
        descriptors.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        chunks.append(raw)
    header = json.dumps({**body, "inputs": descriptors}, separators=(",", ":")).encode("utf-8")
    return header + b"".join(chunks), len(header)


def decode_record(content: bytes, json_length: int | None) -> dict[str, Any]:
    """A job record from a ``GET /status`` answer, binary-framed or JSON.

    In the framed form, each output with ``parameters.binary_data_size`` gets its ``data`` back as
    the numpy array its bytes stand for (key ``"array"``), read in ``outputs`` order.
    """
    if json_length is None:
        return json.loads(content)
    record = json.loads(content[:json_length])
    pos = json_length
    result = record.get("result") or {}
    for out in result.get("outputs") or []:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        out["array"] = decode_raw(content[pos : pos + size], out["datatype"], out["shape"])
        pos += size
    return record


def outputs_of(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The outputs of a succeeded model job's record, by name, as numpy arrays."""
    out: dict[str, np.ndarray] = {}
    for tensor in (record.get("result") or {}).get("outputs") or []:
        out[tensor["name"]] = tensor["array"] if "array" in tensor else to_array(tensor)
    return out
