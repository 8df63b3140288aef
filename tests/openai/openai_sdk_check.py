"""The unmodified `openai` SDK (pinned in scripts/setup.sh, installed into .venv-test) against
inferq's OpenAI face (`/v1`): embeddings (float and base64, the SDK's default), models, files,
batches (a few thousand requests to completion, bad lines, a cancelled batch), tenants, errors.

Usage: openai_sdk_check.py <base URL> <key of tenant red> <key of tenant blue>
Prints "all checks passed" at the end; any failed check raises.
"""

import json
import math
import sys
import time

import openai
from openai import OpenAI

MODEL = "all-MiniLM-L6-v2"
DIMENSIONS = 384
BIG_BATCH = 2500
FINAL = {"completed", "failed", "cancelled", "expired"}

WORDS = (
    "queue worker batch vector model token redis durable lease crash text embedding search "
    "document retrieval answer question index shard tenant window cancel output error file"
).split()


def text(i):
    """A text of 2 to 40 words, different for each i."""
    n = 2 + (i * 7) % 39
    return f"item {i}: " + " ".join(WORDS[(i * 3 + k * 5) % len(WORDS)] for k in range(n))


def close(a, b, tol=1e-5):
    assert len(a) == len(b) == DIMENSIONS, (len(a), len(b))
    worst = max(abs(x - y) for x, y in zip(a, b))
    assert worst <= tol, worst


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b))


def wait_final(client, batch_id, timeout=600):
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        b = client.batches.retrieve(batch_id)
        seen.append(b)
        if b.status in FINAL:
            return b, seen
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} not final after {timeout} s: {seen[-1]}")


def jsonl(lines):
    return ("\n".join(json.dumps(l) for l in lines) + "\n").encode()


def request(custom_id, body):
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


def read_lines(client, file_id):
    return [json.loads(l) for l in client.files.content(file_id).content.decode().splitlines() if l]


def embed_all(client, texts):
    """The vectors of texts through /v1/embeddings, in calls of at most 2048 texts."""
    out = []
    for start in range(0, len(texts), 2048):
        r = client.embeddings.create(model=MODEL, input=texts[start : start + 2048])
        out.extend(d.embedding for d in r.data)
    return out


def check_models(red):
    assert MODEL in [m.id for m in red.models.list()]
    m = red.models.retrieve(MODEL)
    assert (m.id, m.object) == (MODEL, "model")
    try:
        red.models.retrieve("gpt-4o")
        raise AssertionError("unknown model answered")
    except openai.NotFoundError:
        pass


def check_embeddings(red):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."]
    floats = red.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert floats.object == "list" and floats.model == MODEL
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 3 * 2
    for d in floats.data:
        assert abs(math.sqrt(sum(x * x for x in d.embedding)) - 1) < 1e-3
    # The SDK's default asks for base64 and decodes it.
    default = red.embeddings.create(model=MODEL, input=texts)
    for a, b in zip(floats.data, default.data):
        close(a.embedding, b.embedding, 1e-6)
    raw = red.embeddings.create(model=MODEL, input=texts[0], encoding_format="base64")
    assert isinstance(raw.data[0].embedding, str)
    alone = red.embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
    close(alone.data[0].embedding, floats.data[0].embedding)
    v = [d.embedding for d in floats.data]
    assert cosine(v[0], v[1]) > cosine(v[0], v[2]), "similar sentences are closer"
    same = red.embeddings.create(model=MODEL, input=texts, dimensions=DIMENSIONS)
    close(same.data[2].embedding, v[2])
    for kwargs, error in [
        ({"model": "text-embedding-3-small", "input": "x"}, openai.NotFoundError),
        ({"model": MODEL, "input": "x", "dimensions": 256}, openai.BadRequestError),
        ({"model": MODEL, "input": [[101, 2023]]}, openai.BadRequestError),
        ({"model": MODEL, "input": ""}, openai.BadRequestError),
    ]:
        try:
            red.embeddings.create(**kwargs)
            raise AssertionError(f"accepted {kwargs}")
        except error as e:
            assert e.body and "message" in e.body, e.body


def check_files(red, blue):
    content = jsonl([request("only", {"model": MODEL, "input": "hello"})])
    f = red.files.create(file=("requests.jsonl", content), purpose="batch")
    assert (f.object, f.purpose, f.bytes, f.filename) == ("file", "batch", len(content), "requests.jsonl")
    assert red.files.retrieve(f.id).bytes == len(content)
    assert red.files.content(f.id).content == content
    assert f.id in [x.id for x in red.files.list()]
    assert f.id not in [x.id for x in blue.files.list()]
    for call in (blue.files.retrieve, blue.files.content, blue.files.delete):
        try:
            call(f.id)
            raise AssertionError("another tenant's file answered")
        except openai.NotFoundError:
            pass
    try:
        red.files.create(file=("x.jsonl", content), purpose="fine-tune")
        raise AssertionError("purpose fine-tune accepted")
    except openai.BadRequestError:
        pass
    deleted = red.files.delete(f.id)
    assert (deleted.id, deleted.deleted) == (f.id, True)
    try:
        red.files.retrieve(f.id)
        raise AssertionError("deleted file answered")
    except openai.NotFoundError:
        pass


def check_big_batch(red, blue):
    lines, texts = [], {}
    for i in range(BIG_BATCH):
        body = {"model": MODEL, "input": text(i)}
        if i % 3 == 0:
            body["encoding_format"] = "base64"
        lines.append(request(f"req-{i}", body))
        texts[f"req-{i}"] = text(i)
    f = red.files.create(file=("big.jsonl", jsonl(lines)), purpose="batch")
    b = red.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h",
                           metadata={"run": "big"})
    assert b.status in ("validating", "in_progress") and b.request_counts.total == BIG_BATCH, b
    assert b.metadata == {"run": "big"} and b.created_at > 0 and b.expires_at > b.created_at
    for call in (blue.batches.retrieve, blue.batches.cancel):
        try:
            call(b.id)
            raise AssertionError("another tenant's batch answered")
        except openai.NotFoundError:
            pass
    final, seen = wait_final(red, b.id)
    done = [s.request_counts.completed for s in seen]
    assert done == sorted(done), "request_counts.completed never decreases"
    assert final.status == "completed", final
    assert (final.request_counts.total, final.request_counts.completed, final.request_counts.failed) == (BIG_BATCH, BIG_BATCH, 0)
    assert final.completed_at and final.in_progress_at and final.finalizing_at
    assert final.error_file_id is None and final.output_file_id
    out = read_lines(red, final.output_file_id)
    ids = [l["custom_id"] for l in out]
    assert sorted(ids) == sorted(texts), "every request answered exactly once"
    reference = dict(zip(texts, embed_all(red, list(texts.values()))))
    for l in out:
        assert l["error"] is None and l["response"]["status_code"] == 200, l
        emb = l["response"]["body"]["data"][0]["embedding"]
        if isinstance(emb, str):  # base64 lines: decode as the SDK does
            import base64, array
            emb = array.array("f", base64.b64decode(emb)).tolist()
        close(emb, reference[l["custom_id"]])
    assert b.id in [x.id for x in red.batches.list()]
    assert b.id not in [x.id for x in blue.batches.list()]
    try:
        red.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        raise AssertionError("a chat batch was accepted")
    except openai.BadRequestError:
        pass


def check_bad_lines(red):
    good = {"model": MODEL, "input": ["first text", "second text"]}
    content = jsonl([
        request("good-1", good),
        request("bad-model", {"model": "gpt-4o", "input": "x"}),
        {"custom_id": "bad-url", "method": "POST", "url": "/v1/chat/completions", "body": good},
        request("bad-empty", {"model": MODEL, "input": ""}),
        request("good-2", {"model": MODEL, "input": "third text"}),
    ]) + b"this line is not JSON\n"
    f = red.files.create(file=("mixed.jsonl", content), purpose="batch")
    b = red.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    final, _ = wait_final(red, b.id)
    assert final.status == "completed", final
    assert (final.request_counts.total, final.request_counts.completed, final.request_counts.failed) == (6, 2, 4)
    out = read_lines(red, final.output_file_id)
    assert sorted(l["custom_id"] for l in out) == ["good-1", "good-2"]
    assert len(next(l for l in out if l["custom_id"] == "good-1")["response"]["body"]["data"]) == 2
    errors = read_lines(red, final.error_file_id)
    assert sorted(str(l["custom_id"]) for l in errors) == ["None", "bad-empty", "bad-model", "bad-url"]
    assert all(l["response"] is None and l["error"]["code"] for l in errors), errors


def check_cancel(red):
    lines = [request(f"c-{i}", {"model": MODEL, "input": [text(i * 11 + k) for k in range(16)]}) for i in range(1500)]
    f = red.files.create(file=("cancel.jsonl", jsonl(lines)), purpose="batch")
    b = red.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    deadline = time.time() + 120
    while red.batches.retrieve(b.id).request_counts.completed == 0:
        assert time.time() < deadline, "no request finished"
        time.sleep(0.05)
    c = red.batches.cancel(b.id)
    assert c.status in ("cancelling", "cancelled") and c.cancelling_at, c
    final, _ = wait_final(red, b.id)
    assert final.status == "cancelled" and final.cancelled_at, final
    counts = final.request_counts
    assert 0 < counts.completed < counts.total == 1500 and counts.completed + counts.failed == 1500, counts
    out = read_lines(red, final.output_file_id)
    assert len(out) == counts.completed and all(l["response"]["status_code"] == 200 for l in out)
    errors = read_lines(red, final.error_file_id)
    assert len(errors) == counts.failed
    assert sorted(l["custom_id"] for l in out + errors) == sorted(f"c-{i}" for i in range(1500))
    try:
        red.batches.cancel(b.id)
    except openai.BadRequestError:
        raise AssertionError("cancelling a cancelled batch again is refused")


def main():
    base, red_key, blue_key = sys.argv[1:4]
    red = OpenAI(base_url=f"{base}/v1", api_key=red_key, timeout=120)
    blue = OpenAI(base_url=f"{base}/v1", api_key=blue_key, timeout=120)
    try:
        OpenAI(base_url=f"{base}/v1", api_key="not-a-key", max_retries=0).models.list()
        raise AssertionError("a bad key was accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401 and e.code == "invalid_api_key", e.body
    check_models(red)
    check_embeddings(red)
    check_files(red, blue)
    check_bad_lines(red)
    check_big_batch(red, blue)
    check_cancel(red)
    print(f"openai {openai.__version__}: all checks passed")


if __name__ == "__main__":
    main()
