#!/usr/bin/env python3
"""Tiny inferq HTTP client for scripts/run.sh (standard library only).

  demo_job.py ready --url URL [--model NAME]   exit 0 iff GET /readyz is 200 and GET /models lists NAME
  demo_job.py demo  --url URL [--timeout S] [--save-body PATH]
        POST /jobs with a Silero VAD request (512 samples of a 440 Hz sine at 16 kHz), print the
        202 answer, poll GET /status/<id> until succeeded/failed/cancelled, print the record.
        Exit 0 iff the job succeeded.

The API key (scripts/run.sh makes one) is read from the environment variable INFERQ_API_KEY and
sent as `Authorization: Bearer <key>`.
"""
import argparse
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request

TERMINAL = ("succeeded", "failed", "cancelled")


def http(method, url, body=None, timeout=5.0):
    """Return (status, parsed JSON or text) without raising on HTTP error statuses."""
    data = None
    headers = {"accept": "application/json"}
    key = os.environ.get("INFERQ_API_KEY", "")
    if key:
        headers["authorization"] = "Bearer " + key
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def demo_request():
    sr = 16000
    samples = [round(0.5 * math.sin(2 * math.pi * 440 * n / sr), 6) for n in range(512)]
    return {
        "model": "silero_vad",
        "inputs": [
            {"name": "input", "shape": [1, 512], "datatype": "FP32", "data": samples},
            {"name": "state", "shape": [2, 1, 128], "datatype": "FP32", "data": [0.0] * 256},
            {"name": "sr", "shape": [], "datatype": "INT64", "data": [sr]},
        ],
    }


def abbreviate(obj, keep=6):
    """Copy of obj with every list longer than keep+2 shortened to its head plus a count."""
    if isinstance(obj, dict):
        return {k: abbreviate(v, keep) for k, v in obj.items()}
    if isinstance(obj, list):
        if len(obj) > keep + 2:
            return [abbreviate(v, keep) for v in obj[:keep]] + ["... (%d values)" % len(obj)]
        return [abbreviate(v, keep) for v in obj]
    return obj


def pretty(obj, indent=0):
    """JSON with dicts one key a line and lists of plain values on one line."""
    pad = "  " * (indent + 1)
    if isinstance(obj, dict) and obj:
        items = ["%s%s: %s" % (pad, json.dumps(k), pretty(v, indent + 1)) for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        items = [pad + pretty(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(obj)


def show(title, obj):
    print(title)
    print(pretty(abbreviate(obj)))
    sys.stdout.flush()


def cmd_ready(args):
    try:
        status, _ = http("GET", args.url + "/readyz", timeout=2)
        if status != 200:
            return 1
        status, body = http("GET", args.url + "/models", timeout=2)
    except (OSError, urllib.error.URLError):
        return 1
    if status != 200 or not isinstance(body, dict):
        return 1
    names = [m.get("name") for m in body.get("models", []) if isinstance(m, dict)]
    return 0 if args.model in names else 1


def cmd_demo(args):
    body = demo_request()
    if args.save_body:
        with open(args.save_body, "w") as f:
            json.dump(body, f)
    print("POST %s/jobs  (silero_vad: 512 samples of a 440 Hz sine at 16 kHz, zero state, sr=16000)"
          % args.url)
    status, resp = http("POST", args.url + "/jobs", body)
    show("-> HTTP %d" % status, resp)
    if status != 202 or not isinstance(resp, dict) or "id" not in resp:
        print("demo job was not accepted", file=sys.stderr)
        return 1
    job_id = resp["id"]
    status_url = args.url + "/status/" + job_id
    deadline = time.monotonic() + args.timeout
    record = None
    while time.monotonic() < deadline:
        status, record = http("GET", status_url)
        if status == 200 and isinstance(record, dict) and record.get("status") in TERMINAL:
            break
        time.sleep(0.1)
    else:
        show("job %s did not finish within %g s; last answer (HTTP %d):" % (job_id, args.timeout, status),
             record)
        return 1
    show("GET %s -> HTTP %d" % (status_url, status), record)
    if record.get("status") != "succeeded":
        print("demo job %s: %s" % (job_id, record.get("status")), file=sys.stderr)
        return 1
    for out in (record.get("result") or {}).get("outputs", []):
        if out.get("name") == "output" and out.get("data"):
            print("speech probability of the 440 Hz tone: %.4f (a pure tone is not speech)" % out["data"][0])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("ready")
    r.add_argument("--url", required=True)
    r.add_argument("--model", default="silero_vad")
    d = sub.add_parser("demo")
    d.add_argument("--url", required=True)
    d.add_argument("--timeout", type=float, default=30.0)
    d.add_argument("--save-body", help="also write the request body (JSON) to this file")
    args = ap.parse_args()
    args.url = args.url.rstrip("/")
    if args.cmd == "ready":
        return cmd_ready(args)
    try:
        return cmd_demo(args)
    except (OSError, urllib.error.URLError) as e:
        print("request to %s failed: %s" % (args.url, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
