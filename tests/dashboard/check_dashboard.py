"""Drives inferq's dashboard (GET /dashboard) in Debian's headless Chromium through Playwright.

Usage: check_dashboard.py BASE_URL WORKER_ID DEAD_JOB_ID SCREENSHOT.png [CHROMIUM]
Run by tests/tests/it/dashboard.rs with .venv-test's Python against an API with a live worker
WORKER_ID serving `linear`, and two dead letters: the job DEAD_JOB_ID (its retry can succeed)
and an unreadable queue entry. Checks that the page loads with no console error and no failed
request, shows the worker and the model, reflects a batch of jobs submitted while it is open,
lists running jobs,
that its Retry button queues the dead letter's job again, which then succeeds, and that the
unreadable entry offers no Retry and is discarded by its Discard button. Saves a screenshot
(before the clicks), prints its path and "dashboard ok"; exits non-zero with the reasons
otherwise.
"""

import json
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

# Debian's; Playwright downloads no browser of its own.
CHROMIUM = "/usr/bin/chromium"
BATCH = 40
TIMEOUT_MS = 30_000


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.status, json.loads(res.read() or b"null")


def linear_job(i):
    return {
        "model": "linear",
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [i, 1, 2, 3]}],
    }


def wait_terminal(base, job_id, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, record = http("GET", f"{base}/status/{job_id}")
        except urllib.error.HTTPError as e:
            # 503 + Retry-After: Redis did not answer in time (a loaded machine); ask again.
            if e.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        if record["status"] in ("succeeded", "failed", "cancelled"):
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not finished in {timeout_s} s: {record}")
        time.sleep(0.05)


def main():
    base, worker_id, dead_id, screenshot = sys.argv[1:5]
    chromium = sys.argv[5] if len(sys.argv) > 5 else CHROMIUM
    problems = []
    try:
        check(base, worker_id, dead_id, screenshot, chromium, problems)
    finally:
        # Also when a check failed: a console error often says why.
        if problems:
            print("\n".join(problems))
    if problems:
        sys.exit(1)
    print(f"screenshot: {screenshot}")
    print("dashboard ok")


def check(base, worker_id, dead_id, screenshot, chromium, problems):
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        # Anything the page logs as an error, throws, or fails to load is a failure (a
        # Content-Security-Policy violation shows up as a console error too).
        page.on(
            "console",
            lambda m: m.type == "error" and problems.append(f"console error: {m.text} ({m.location})"),
        )
        page.on("pageerror", lambda e: problems.append(f"uncaught exception: {e}"))
        page.on(
            "requestfailed",
            lambda r: problems.append(f"request failed: {r.method} {r.url}: {r.failure}"),
        )
        page.on(
            "response",
            lambda r: r.status >= 400 and problems.append(f"{r.request.method} {r.url}: {r.status}"),
        )
        # The page makes no request off its origin.
        page.on(
            "request",
            lambda r: r.url.startswith(base) or problems.append(f"request off the origin: {r.url}"),
        )

        response = page.goto(f"{base}/dashboard")
        assert response.status == 200, response.status
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, csp
        page.wait_for_selector("#connection.ok")

        # The live worker and the model.
        worker_row = page.locator(f'#workers tr[data-worker="{worker_id}"]')
        worker_row.wait_for()
        assert "linear" in worker_row.locator(".models").inner_text(), worker_row.inner_text()
        model_row = page.locator('#models tr[data-model="linear"]')
        model_row.wait_for()
        page.wait_for_function(
            """() => {
                const c = document.querySelector('#models tr[data-model="linear"] .model-workers');
                return c && Number(c.textContent) >= 1;
            }"""
        )
        before = int(model_row.locator(".completed").inner_text())

        # A batch of jobs: the page's completed count and throughput reflect them.
        ids = [http("POST", f"{base}/jobs", linear_job(i))[1]["id"] for i in range(BATCH)]
        for job_id in ids:
            record = wait_terminal(base, job_id)
            assert record["status"] == "succeeded", record
        page.wait_for_function(
            """(want) => {
                const c = document.querySelector('#models tr[data-model="linear"] .completed');
                return c && Number(c.textContent) >= want;
            }""",
            arg=before + BATCH,
        )
        page.wait_for_function(
            """() => {
                const li = document.querySelector('#legend li[data-model="linear"]');
                return li && Number(li.dataset.peak) > 0;
            }"""
        )
        line = page.locator('#chart-throughput path[data-model="linear"]')
        assert line.count() == 1, "no throughput line for linear"

        # Running jobs: six slow jobs (about 0.7 s each) keep the worker busy for over two
        # seconds, so a poll sees one of them running.
        slow = [
            http("POST", f"{base}/jobs", {
                "model": "slow",
                "inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [i]}],
            })[1]["id"]
            for i in range(6)
        ]
        page.wait_for_function(
            """(ids) => ids.some((id) => {
                const row = document.querySelector(`#running tr[data-key="${id}"]`);
                return row && row.textContent.includes("slow");
            })""",
            arg=slow,
            timeout=10_000,
        )
        for job_id in slow:
            assert wait_terminal(base, job_id)["status"] == "succeeded"

        # The dead letter is listed, and its failure with its code.
        dead_row = page.locator(f'#dead tr[data-job="{dead_id}"]')
        dead_row.wait_for()
        assert "max_attempts_exceeded" in dead_row.inner_text(), dead_row.inner_text()
        # Its tenant (the API runs without keys here: every job is the default tenant's).
        tenant = dead_row.locator("td.tenant")
        assert tenant.inner_text() == "default", tenant.inner_text()
        failure = page.locator(f'#failures tr[data-job="{dead_id}"]')
        failure.wait_for()
        assert "max_attempts_exceeded" in failure.inner_text(), failure.inner_text()

        # The unreadable entry: no job to run again, so no Retry; Discard only.
        unreadable = page.locator('#dead tr[data-job=""]')
        unreadable.wait_for()
        assert "malformed_entry" in unreadable.inner_text(), unreadable.inner_text()
        assert unreadable.locator("button.retry").is_hidden()
        assert unreadable.locator("button.discard").is_visible()
        # Two dead letters fit one page: no page buttons.
        assert page.locator("#dead-pages").is_hidden()

        # Retry: the job is queued again, leaves the dead letters, and runs.
        page.screenshot(path=screenshot, full_page=True)
        with page.expect_response(lambda r: r.url.endswith("/retry")) as retried:
            dead_row.locator("button.retry").click()
        assert retried.value.status == 202, retried.value.status
        page.wait_for_selector("#notice:not([hidden])")
        notice = page.locator("#notice").inner_text()
        assert dead_id in notice and "queued again" in notice, notice
        record = wait_terminal(base, dead_id)
        assert record["status"] == "succeeded", record
        dead_row.wait_for(state="detached")

        # Discard, once confirmed: the entry is deleted.
        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
            unreadable.locator("button.discard").click()
        assert deleted.value.status == 204, deleted.value.status
        unreadable.wait_for(state="detached")
        _, remaining = http("GET", f"{base}/dead")
        assert remaining["dead_letters"] == [], remaining

        browser.close()


if __name__ == "__main__":
    main()
