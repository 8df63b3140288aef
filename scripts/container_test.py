#!/usr/bin/env python3
"""The container test: inferq's images and docker-compose.yml on a real Docker engine.

Builds the images (scripts/images.sh for the base images; the Dockerfile's `prebuilt` target with
the binaries built on the host), starts the compose project with three workers, and checks what a
user relies on when scaling worker containers:

  1. `GET /workers` lists three distinct workers; 1,000 `linear` jobs come back right.
  2. `docker kill` of a worker holding jobs: nothing accepted is lost, each job ends once.
  3. a partition (`docker network disconnect` for longer than a lease) of a worker holding jobs:
     its jobs are taken over and finish elsewhere; after `docker network connect` its late
     writes are fenced (no final record changes) and it takes work again.
  4. scale down under load (`--scale worker=1`): the stopped workers drain within their grace
     period and exit 0; nothing is lost.
  5. `docker-compose restart redis` under load (AOF on the volume): every job that got 202
     finishes.

It prints one summary line with the figures. The project gets a unique name, talks to the API
on a loopback port only, and removes its containers, network, volume and image tags at the end
(the base images and the layer cache stay, so the next run builds nothing but the binaries'
layer). No Docker engine: prints why and exits 0 (skipped).

Usage: scripts/container_test.py [--binaries DIR]   (default DIR: target/debug, the binaries
       scripts/test.sh builds; env INFERQ_CONTAINER_BINARIES overrides)
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDE = "tests/containers/compose.test.yml"
LEASE_SECS = 2.0  # INFERQ_LEASE_MS in the override
GRACE_SECS = 20.0  # the worker's stop_grace_period in the override

# `linear`: y = x·W + b, W[i][j] = 0.1·(3i+j+1), b = [0.5, -0.5, 1.0] (tests/models/README.md)
W = [[0.1 * (3 * i + j + 1) for j in range(3)] for i in range(4)]
B = [0.5, -0.5, 1.0]


def stamp(rfc3339):
    """Seconds since the epoch of an RFC 3339 time as the API writes it."""
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def log(msg):
    print("[containers] " + msg, flush=True)


class Failed(Exception):
    pass


def check(ok, what):
    if not ok:
        raise Failed(what)
    log("ok    " + what)


def run(cmd, check_rc=True, capture=True, timeout=300, env=None):
    res = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout, text=True,
                         stdout=subprocess.PIPE if capture else None,
                         stderr=subprocess.PIPE if capture else None)
    if check_rc and res.returncode != 0:
        raise Failed("%s exited %d: %s" % (" ".join(cmd), res.returncode,
                                            (res.stderr or "").strip()[-2000:]))
    return res


def docker_answers():
    if shutil.which("docker") is None:
        return "no docker command"
    try:
        res = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return "no Docker engine answers (%s)" % last
    return None


def compose_command():
    """Compose v2 (`docker compose`) when present, else docker-compose 1.x."""
    if subprocess.run(["docker", "compose", "version"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


class Api:
    """A tiny client of the API on its loopback port (one connection per thread)."""

    def __init__(self, port, key):
        self.port, self.key = port, key
        self.local = threading.local()

    def request(self, method, path, body=None, timeout=60):
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                                    timeout=timeout)
            try:
                headers = {"Authorization": "Bearer " + self.key}
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    headers["Content-Type"] = "application/json"
                conn.timeout = timeout
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                try:
                    doc = json.loads(raw) if raw else None
                except ValueError:
                    doc = None
                return resp.status, doc
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 1:
                    return None, None
        return None, None

    def submit(self, model, x):
        shape = [1, len(x)]
        status, doc = self.request("POST", "/jobs", {
            "model": model,
            "inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": x}]})
        return doc["id"] if status == 202 else None

    def status(self, job, wait=0):
        return self.request("GET", "/status/%s?wait=%s" % (job, wait), timeout=wait + 30)

    def workers(self):
        status, doc = self.request("GET", "/workers")
        return doc["workers"] if status == 200 else []


def expected(model, x):
    if model == "linear":
        return [sum(x[i] * W[i][j] for i in range(4)) + B[j] for j in range(3)]
    return [x[0] + 1.0]


class Ledger:
    """Every job that got 202: its model, input, and the final record first seen."""

    def __init__(self):
        self.jobs = {}
        self.lock = threading.Lock()

    def add(self, job, model, x):
        with self.lock:
            self.jobs[job] = {"model": model, "x": x, "final": None}


def new_input(model):
    if model == "linear":
        return [round(random.uniform(-2, 2), 3) for _ in range(4)]
    return [round(random.uniform(-2, 2), 3)]


def submit_many(api, ledger, model, n, threads=8):
    def one(_):
        x = new_input(model)
        job = api.submit(model, x)
        if job:
            ledger.add(job, model, x)
        return job
    with cf.ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(one, range(n)))
    return [j for j in ids if j]


def await_final(api, ledger, ids, deadline_secs=120):
    """Waits until every job is final; returns the ids still not final (lost) at the deadline."""
    end = time.monotonic() + deadline_secs

    def one(job):
        while time.monotonic() < end:
            status, doc = api.status(job, wait=10)
            if status == 200 and doc["status"] in ("succeeded", "failed", "cancelled"):
                with ledger.lock:
                    if ledger.jobs[job]["final"] is None:
                        ledger.jobs[job]["final"] = doc
                return None
            if status is None or status >= 500:
                time.sleep(0.5)
        return job
    with cf.ThreadPoolExecutor(16) as pool:
        return [j for j in pool.map(one, ids) if j]


def wrong_results(ledger, ids):
    bad = []
    for job in ids:
        e = ledger.jobs[job]
        doc = e["final"]
        if doc is None or doc["status"] != "succeeded":
            bad.append((job, doc and doc["status"], doc and doc.get("error")))
            continue
        got = doc["result"]["outputs"][0]["data"]
        want = expected(e["model"], e["x"])
        if len(got) != len(want) or any(abs(g - w) > 1e-4 for g, w in zip(got, want)):
            bad.append((job, got, want))
    return bad


def changed_since_final(api, ledger, ids):
    """Jobs whose final record changed after it was first seen final (a second ending, or a
    late write that was not fenced)."""
    def one(job):
        status, doc = api.status(job)
        first = ledger.jobs[job]["final"]
        same = status == 200 and all(doc.get(k) == first.get(k) for k in
                                     ("status", "version", "attempts", "finished_at", "result"))
        return None if same else job
    with cf.ThreadPoolExecutor(16) as pool:
        return [j for j in pool.map(one, ids) if j]


class Test:
    def __init__(self, binaries):
        self.binaries = binaries
        self.project = "inferqct%d%s" % (os.getpid(), secrets.token_hex(2))
        self.tag = "inferq-test/inferq:" + self.project
        self.bin_tag = "inferq-test/binaries:" + self.project
        self.key = secrets.token_hex(24)
        self.compose = compose_command()
        self.env = None
        self.figures = {"jobs": 0, "lost": 0, "duplicates": 0, "wrong": 0, "taken_over": 0}

    # ---------------------------------------------------------------- docker and compose
    def dc(self, *args, **kw):
        return run(self.compose + ["-p", self.project, "-f", "docker-compose.yml", "-f", OVERRIDE]
                   + list(args), env=self.env, **kw)

    def workers_containers(self):
        ids = self.dc("ps", "-q", "worker").stdout.split()
        out = []
        for cid in ids:
            fmt = ('{{.Id}} {{index .Config.Labels "com.docker.compose.container-number"}} '
                   '{{.State.Running}} {{.Config.Hostname}}')
            cid_full, num, running, host = run(["docker", "inspect", "-f", fmt, cid]).stdout.split()
            if running == "true":
                out.append({"id": cid_full, "num": int(num), "host": host})
        return sorted(out, key=lambda c: c["num"])

    def build(self):
        t0 = time.monotonic()
        settings = run(["scripts/images.sh"], timeout=1200).stdout
        env = dict(os.environ)
        for line in settings.splitlines():
            k, _, v = line.partition("=")
            if k.startswith("INFERQ_"):
                env[k] = v
        # The binaries built on the host, without their debug info, as an image the `prebuilt`
        # target copies them from (no Rust toolchain image is needed).
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("inferq-api", "inferq-worker"):
                src = os.path.join(self.binaries, name)
                if not os.path.exists(src):
                    raise Failed("%s missing (build it: cargo build --bins)" % src)
                shutil.copy(src, tmp)
                run(["strip", "--strip-debug", os.path.join(tmp, name)])
            tar = subprocess.Popen(["tar", "-C", tmp, "-c", "inferq-api", "inferq-worker"],
                                   stdout=subprocess.PIPE)
            subprocess.run(["docker", "import", "-", self.bin_tag], stdin=tar.stdout, check=True,
                           stdout=subprocess.DEVNULL)
            tar.wait()
        # The legacy builder, so the test needs no BuildKit; it builds assets, base, prebuilt.
        # The base stage keeps a tag of its own, so its layers (and the assets stage's) stay
        # cached from one run to the next.
        benv = dict(env, DOCKER_BUILDKIT="0")
        args = ["--build-arg", "DEBIAN_IMAGE=" + env["INFERQ_DEBIAN_IMAGE"],
                "--build-arg", "PYTHON_IMAGE=" + env["INFERQ_PYTHON_IMAGE"],
                "--build-arg", "BINARIES_IMAGE=" + self.bin_tag]
        run(["docker", "build", "-q", "--target", "base", "-t", "inferq-test/base:latest"]
            + args + ["."], env=benv, timeout=1200)
        run(["docker", "build", "-q", "--target", "prebuilt", "-t", self.tag] + args + ["."],
            env=benv, timeout=1200)
        env.update(INFERQ_IMAGE=self.tag, INFERQ_ADMIN_KEY=self.key, INFERQ_API_PUBLISH="127.0.0.1:")
        self.env = env
        log("images built in %.0f s (%s, redis %s)" % (time.monotonic() - t0, self.tag,
                                                        env["INFERQ_REDIS_IMAGE"]))

    def up(self, workers):
        self.dc("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=%d" % workers,
                timeout=300)

    def wait_workers(self, n, timeout=90, exclude_hosts=()):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ws = [w for w in self.api.workers() if w["host"] not in exclude_hosts]
            if len({w["id"] for w in ws}) >= n:
                return ws
            time.sleep(0.5)
        raise Failed("fewer than %d live workers after %d s: %s" % (n, timeout, self.api.workers()))

    def live_workers(self):
        """The workers whose last heartbeat is recent, one per container (a container restarted
        after a kill still has its dead process's entry for a few seconds: the newest wins)."""
        now = time.time()
        by_host = {}
        for w in self.api.workers():
            if now - stamp(w["last_heartbeat"]) > 3.0:
                continue
            if w["host"] not in by_host or stamp(w["started_at"]) > stamp(by_host[w["host"]]["started_at"]):
                by_host[w["host"]] = w
        return list(by_host.values())

    def busy_worker(self, containers, timeout=30):
        """A worker container that holds a job right now (its heartbeat says a thread is busy)."""
        hosts = {c["host"]: c for c in containers}
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for w in self.live_workers():
                if w["busy"] > 0 and w["host"] in hosts:
                    return hosts[w["host"]], w
            time.sleep(0.2)
        raise Failed("no worker reported a busy thread within %d s" % timeout)

    # ------------------------------------------------------------------------- phases
    def settle(self, ids, what, deadline=180):
        lost = await_final(self.api, self.ledger, ids, deadline)
        bad = wrong_results(self.ledger, [j for j in ids if j not in lost])
        self.figures["lost"] += len(lost)
        self.figures["wrong"] += len(bad)
        self.figures["taken_over"] += sum(
            1 for j in ids if j not in lost and self.ledger.jobs[j]["final"]["attempts"] > 1)
        check(not lost, "%s: all %d accepted jobs reached a final state (lost: %s)"
              % (what, len(ids), lost[:5]))
        check(not bad, "%s: every job succeeded with the right result (wrong: %s)" % (what, bad[:3]))

    def phase_scale_out(self):
        self.up(3)
        port = self.dc("port", "api", "8080").stdout.strip().rsplit(":", 1)[1]
        self.api = Api(int(port), self.key)
        end = time.monotonic() + 90
        while self.api.request("GET", "/readyz")[0] != 200:
            if time.monotonic() > end:
                raise Failed("the API never became ready")
            time.sleep(0.5)
        containers = self.workers_containers()
        ws = self.wait_workers(3)
        check(len(containers) == 3 and len({w["id"] for w in ws}) == 3
              and {w["host"] for w in ws} == {c["host"] for c in containers},
              "GET /workers lists three distinct workers, one per container")
        ids = submit_many(self.api, self.ledger, "linear", 1000, threads=16)
        check(len(ids) == 1000, "1,000 linear jobs accepted (202)")
        self.settle(ids, "1,000 linear jobs")

    def phase_kill(self):
        # Ten slow jobs per worker: whichever worker is picked still holds one when it is
        # killed, however fast the machine runs them (0.4-1 s each) and however old the
        # heartbeat that showed it busy (up to 2 s).
        slow = submit_many(self.api, self.ledger, "slow", 30)
        fast = submit_many(self.api, self.ledger, "linear", 200)
        victim, w = self.busy_worker(self.workers_containers())
        run(["docker", "kill", victim["id"]])
        log("killed worker %s (busy %d) while it held a job" % (w["id"], w["busy"]))
        ids = slow + fast
        self.settle(ids, "docker kill")
        taken = [j for j in slow if self.ledger.jobs[j]["final"]["attempts"] > 1]
        check(len(taken) >= 1, "docker kill: the killed worker's job(s) were taken over "
              "(%d slow jobs with attempts > 1)" % len(taken))
        self.up(3)  # starts the killed container again
        end = time.monotonic() + 90
        while len(self.live_workers()) < 3:
            if time.monotonic() > end:
                raise Failed("the killed worker's container did not come back: %s" % self.api.workers())
            time.sleep(0.5)

    def phase_partition(self):
        network = self.project + "_default"
        # Ten slow jobs per worker: the one picked stays busy for a few seconds, on a fast
        # machine too.
        slow = submit_many(self.api, self.ledger, "slow", 30)
        victim, w = self.busy_worker(self.workers_containers())
        run(["docker", "network", "disconnect", network, victim["id"]])
        t_cut = time.monotonic()
        log("disconnected worker %s (busy %d) from %s" % (w["id"], w["busy"], network))
        fast = submit_many(self.api, self.ledger, "linear", 200)
        ids = slow + fast
        # Its jobs are taken over after a lease and finish on the other workers while it is cut off.
        self.settle(ids, "partition: jobs finished while the worker was cut off")
        cut_for = time.monotonic() - t_cut
        check(cut_for > LEASE_SECS, "the partition outlasted a lease (%.1f s > %.1f s)"
              % (cut_for, LEASE_SECS))
        taken = [j for j in slow if self.ledger.jobs[j]["final"]["attempts"] > 1]
        check(len(taken) >= 1, "partition: the cut-off worker's job(s) were taken over "
              "(%d slow jobs with attempts > 1)" % len(taken))
        # Let it finish its stale attempt while cut off, then reconnect: its late writes must
        # bounce off the fence.
        time.sleep(max(0.0, 6.0 - cut_for))
        run(["docker", "network", "connect", network, victim["id"]])
        t_reconnect = time.time()
        log("reconnected after %.1f s" % (time.monotonic() - t_cut))

        def entry():
            return next((x for x in self.live_workers() if x["host"] == victim["host"]), None)
        # It rejoins: a heartbeat sent after the reconnect (its figures from then on are the
        # baseline), then it takes work again.
        end = time.monotonic() + 60
        fresh = None
        while time.monotonic() < end and fresh is None:
            x = entry()
            if x and stamp(x["last_heartbeat"]) > t_reconnect:
                fresh = x
            else:
                time.sleep(0.5)
        check(fresh is not None, "partition: the reconnected worker is live again (a heartbeat after "
              "the reconnect)")
        rejoined = False
        extra = []
        while time.monotonic() < end and not rejoined:
            extra += submit_many(self.api, self.ledger, "slow", 3)
            time.sleep(2)
            x = entry()
            rejoined = x is not None and x["jobs_succeeded"] > fresh["jobs_succeeded"]
        self.settle(extra, "partition: jobs after the reconnect")
        check(rejoined, "partition: the reconnected worker took work again")
        time.sleep(LEASE_SECS)
        changed = changed_since_final(self.api, self.ledger, ids)
        self.figures["duplicates"] += len(changed)
        check(not changed, "partition: no final record changed after the reconnect (late writes "
              "fenced; %d records compared)" % len(ids))
        # What the cut-off worker says about its late writes (informational: it may also have
        # given the attempt up before finishing it).
        logs = run(["docker", "logs", victim["id"]], check_rc=False)
        self.figures["fenced"] = (logs.stdout + logs.stderr).count("outcome discarded")
        log("the cut-off worker logged %d discarded (fenced) outcome(s)" % self.figures["fenced"])

    def phase_scale_down(self):
        containers = self.workers_containers()
        check(len(containers) == 3, "three worker containers before the scale-down")
        # Ten slow jobs per worker, so a heartbeat (every 2 s) shows one busy however fast
        # the machine runs them.
        slow = submit_many(self.api, self.ledger, "slow", 30)
        fast = submit_many(self.api, self.ledger, "linear", 300)
        self.busy_worker(containers)
        results = {}

        def wait(c):
            t0 = time.monotonic()
            rc = run(["docker", "wait", c["id"]], check_rc=False, timeout=600).stdout.strip()
            results[c["id"]] = (rc, time.monotonic() - t0)
        # Wait on all three: which ones Compose stops is its choice. The survivor's waiter ends
        # at the cleanup.
        for c in containers:
            threading.Thread(target=wait, args=(c,), daemon=True).start()
        time.sleep(0.2)
        self.up(1)
        left = {c["id"] for c in self.workers_containers()}
        check(len(left) == 1, "one worker container left")
        leaving = [c for c in containers if c["id"] not in left]
        end = time.monotonic() + 60
        while time.monotonic() < end and any(c["id"] not in results for c in leaving):
            time.sleep(0.2)
        for c in leaving:
            rc, secs = results.get(c["id"], ("still running", float("nan")))
            check(rc == "0" and secs < GRACE_SECS, "scale-down: worker #%d exited %s after %.1f s "
                  "(grace %.0f s)" % (c["num"], rc, secs, GRACE_SECS))
        self.settle(slow + fast, "scale-down to one worker")

    def phase_redis_restart(self):
        stop = threading.Event()
        accepted, refused = [], [0]
        stamps = []

        def submitter():
            while not stop.is_set():
                x = new_input("linear")
                job = self.api.submit("linear", x)
                if job:
                    self.ledger.add(job, "linear", x)
                    accepted.append(job)
                    stamps.append(time.monotonic())
                else:
                    refused[0] += 1
                    time.sleep(0.05)
        threads = [threading.Thread(target=submitter) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(2)
        t0 = time.monotonic()
        self.dc("restart", "redis", timeout=120)
        t1 = time.monotonic()
        end = time.monotonic() + 60
        while time.monotonic() < end and not [s for s in stamps if s > t1 + 1]:
            time.sleep(0.2)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        # Recovery: the longest time around the restart without a 202.
        marks = sorted([t0] + [s for s in stamps if s >= t0 - 5])
        gaps = [b - a for a, b in zip(marks, marks[1:])]
        self.figures["recovery_secs"] = max(gaps) if gaps else 0.0
        log("redis restarted in %.1f s; %d jobs got 202, %d submissions refused meanwhile"
            % (t1 - t0, len(accepted), refused[0]))
        check(any(s > t1 for s in stamps), "submissions succeed again after the restart")
        self.settle(accepted, "redis restart")

    def run(self):
        t0 = time.monotonic()
        self.ledger = Ledger()
        try:
            self.build()
            t_up = time.monotonic()
            for phase in (self.phase_scale_out, self.phase_kill, self.phase_partition,
                          self.phase_scale_down, self.phase_redis_restart):
                log("--- " + phase.__name__[len("phase_"):].replace("_", " "))
                phase()
            all_ids = list(self.ledger.jobs)
            changed = changed_since_final(self.api, self.ledger, all_ids)
            self.figures["duplicates"] += len(changed)
            check(not changed, "no final record changed after it was first read (%d jobs)"
                  % len(all_ids))
            self.figures["jobs"] = len(all_ids)
            self.figures["compose_secs"] = time.monotonic() - t_up
            return 0
        except Failed as e:
            log("FAIL  %s" % e)
            try:
                logs = self.dc("logs", "--no-color", "--tail", "40", check_rc=False).stdout
                print(logs[-8000:])
            except Exception:  # noqa: BLE001 (best effort, the failure is reported already)
                pass
            self.figures["jobs"] = len(self.ledger.jobs)
            return 1
        finally:
            self.cleanup()
            f = self.figures
            log("summary: jobs=%d lost=%d duplicates=%d wrong=%d taken_over=%d fenced=%s "
                "recovery_secs=%.1f elapsed_secs=%.0f"
                % (f["jobs"], f["lost"], f["duplicates"], f["wrong"], f["taken_over"],
                   f.get("fenced", "-"), f.get("recovery_secs", float("nan")),
                   time.monotonic() - t0))

    def cleanup(self):
        if self.compose and self.env is not None:
            self.dc("down", "-v", "--remove-orphans", "-t", "5", check_rc=False, timeout=180)
        for tag in (self.tag, self.bin_tag):
            run(["docker", "rmi", tag], check_rc=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binaries", default=os.environ.get("INFERQ_CONTAINER_BINARIES",
                                                         os.path.join(ROOT, "target", "debug")))
    args = ap.parse_args()
    reason = docker_answers()
    if reason is None and compose_command() is None:
        reason = "neither `docker compose` nor docker-compose is installed"
    if reason:
        log("skipped: " + reason)
        return 0
    return Test(os.path.abspath(args.binaries)).run()


if __name__ == "__main__":
    sys.exit(main())
