"""Drives inferq's dashboard in Debian's headless Chromium through Playwright, against an API
that requires keys: without a key, and with a key that lacks the `admin` scope, the page asks
for a key, says why, and shows no data table; with an admin key it shows the live worker.

Then, while speech pipeline jobs run and wait (the test submitted them), the Queues table shows
the pipeline's queue with them, and a screenshot is saved.

Usage: check_key_gate.py BASE_URL WORKER_ID READ_KEY ADMIN_KEY SCREENSHOT.png [CHROMIUM]
Run by tests/tests/it/dashboard_keys.rs with .venv-test's Python. Prints "key gate ok"; exits
non-zero with the reasons otherwise.
"""

import sys

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 30_000


def main():
    base, worker_id, read_key, admin_key, screenshot = sys.argv[1:6]
    chromium = sys.argv[6] if len(sys.argv) > 6 else CHROMIUM
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda e: problems.append(f"uncaught exception: {e}"))
        page.on(
            "request",
            lambda r: r.url.startswith(base) or problems.append(f"request off the origin: {r.url}"),
        )

        page.goto(f"{base}/dashboard")
        prompt = page.locator("#key-needed")
        prompt.wait_for(state="visible")
        why = page.locator("#key-needed-why").inner_text()
        expect(problems, "requires an API key" in why, f"no-key reason: {why!r}")
        expect(problems, not page.locator("#data").is_visible(), "data shown without a key")
        for text in ("No live worker", "No model registered"):
            expect(problems, page.get_by_text(text).count() == 0 or not page.get_by_text(text).first.is_visible(),
                   f"'{text}' shown without a key")

        # A valid key without the admin scope: it says what is needed, still no data.
        page.fill("#key-needed-input", read_key)
        page.click("#key-needed-form button")
        page.wait_for_function(
            "() => document.querySelector('#key-needed-why').textContent.includes('admin')"
        )
        expect(problems, not page.locator("#data").is_visible(), "data shown with a read-only key")

        # An admin key: the figures appear, the live worker among them.
        page.fill("#key-needed-input", admin_key)
        page.click("#key-needed-form button")
        page.locator("#data").wait_for(state="visible")
        page.locator(f'#workers tr[data-worker="{worker_id}"]').wait_for()
        expect(problems, not prompt.is_visible(), "the key prompt stays with an admin key")

        # The speech jobs the test submitted: the pipeline is a queue like a model's.
        page.wait_for_function(
            """() => {
                const row = document.querySelector('#models tr[data-model="pipeline:speech_segments"]');
                if (!row) return false;
                const n = (i) => Number(row.cells[i].textContent);
                return n(1) + n(2) >= 1;
            }"""
        )
        page.screenshot(path=screenshot, full_page=True)
        print(f"screenshot: {screenshot}")
        browser.close()
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print("key gate ok")


def expect(problems, ok, what):
    if not ok:
        problems.append(what)


if __name__ == "__main__":
    main()
