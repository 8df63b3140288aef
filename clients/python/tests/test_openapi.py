"""The client against the committed OpenAPI document, and the package's own promises
(docstrings on every public name, the same API sync and async)."""

from __future__ import annotations

import inspect
import json

import inferq
from inferq import _calls
from conftest import REPO

METHODS = {"get", "post", "put", "patch", "delete"}


def operations() -> dict[str, tuple[str, str]]:
    doc = json.loads((REPO / "docs" / "openapi.json").read_text())
    return {
        op["operationId"]: (method.upper(), path)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def test_every_operation_is_covered_or_deliberately_left_out() -> None:
    ops = operations()
    missing = set(ops) - set(_calls.COVERED) - set(_calls.LEFT_OUT)
    assert not missing, f"operations the client neither covers nor lists in LEFT_OUT: {sorted(missing)}"
    assert not set(_calls.COVERED) & set(_calls.LEFT_OUT)
    stale = (set(_calls.COVERED) | set(_calls.LEFT_OUT)) - set(ops)
    assert not stale, f"operations the document no longer has: {sorted(stale)}"
    for op, (method, path, name) in _calls.COVERED.items():
        assert ops[op] == (method, path), f"{op}: the document says {ops[op]}, the client {method} {path}"
        for cls in (inferq.Client, inferq.AsyncClient):
            assert callable(getattr(cls, name, None)), f"{cls.__name__}.{name} (for {op}) is missing"
    assert all(reason.strip() for reason in _calls.LEFT_OUT.values())


def public_api(cls: type) -> dict[str, object]:
    return {n: m for n, m in vars(cls).items() if not n.startswith("_") and callable(m)}


def test_sync_and_async_clients_have_the_same_methods_and_parameters() -> None:
    for sync, asyn in ((inferq.Client, inferq.AsyncClient), (inferq.Job, inferq.AsyncJob)):
        s, a = public_api(sync), public_api(asyn)
        assert set(s) - {"close"} == set(a) - {"aclose"}
        for name in set(s) & set(a):
            assert list(inspect.signature(s[name]).parameters) == list(inspect.signature(a[name]).parameters), name


def test_every_public_name_has_a_docstring() -> None:
    undocumented = []
    for name in inferq.__all__:
        obj = getattr(inferq, name)
        if not inspect.getdoc(obj):
            undocumented.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (callable(member) or isinstance(member, property)):
                    continue
                if not (member.__doc__ or "").strip():
                    undocumented.append(f"{name}.{attr}")
    assert not undocumented, undocumented
