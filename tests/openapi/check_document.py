"""Checks inferq's OpenAPI document: valid OpenAPI (openapi-spec-validator), and real request and
response bodies valid against the schemas the document gives them.

Usage: check_document.py DOCUMENT.json BODIES.json
BODIES.json: {"requests": [[method, path, body]], "responses": [[method, path, status, body]]}
with `path` as the document spells it (e.g. "/status/{id}"). Run by tests/tests/it/openapi.rs
with .venv-test's Python (scripts/setup.sh installs openapi-spec-validator there).
Prints "document ok" on success; exits non-zero with the reasons otherwise.
"""

import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate


def schema_validator(document, schema):
    # The document's `#/components/...` references resolve against this root.
    return Draft202012Validator(dict(schema, components=document.get("components", {})))


def main():
    with open(sys.argv[1]) as f:
        document = json.load(f)
    with open(sys.argv[2]) as f:
        bodies = json.load(f)
    validate(document)

    problems = []
    for method, path, body in bodies["requests"]:
        op = document["paths"][path][method.lower()]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        for e in schema_validator(document, schema).iter_errors(body):
            problems.append(f"{method} {path} request: {e.message} at {list(e.absolute_path)}")
    for method, path, status, body in bodies["responses"]:
        op = document["paths"][path][method.lower()]
        response = op["responses"].get(str(status))
        if response is None:
            problems.append(f"{method} {path}: status {status} is not documented")
            continue
        schema = response["content"]["application/json"]["schema"]
        for e in schema_validator(document, schema).iter_errors(body):
            problems.append(
                f"{method} {path} {status} response: {e.message} at {list(e.absolute_path)}"
            )

    # The documented examples are requests too.
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        if "example" in schema:
            for e in schema_validator(document, schema).iter_errors(schema["example"]):
                problems.append(f"example of {name}: {e.message}")

    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(
        f"document ok: {len(bodies['requests'])} requests, "
        f"{len(bodies['responses'])} responses valid"
    )


if __name__ == "__main__":
    main()
