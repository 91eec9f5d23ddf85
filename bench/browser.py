"""Drive `streamlit run app.py` in Debian's Chromium through Playwright (shared by tests and benches).

    with served_app(index_dir) as url, chromium() as browser: ...

No browser download: Playwright's Python package drives /usr/bin/chromium
(`apt-get install chromium`; `.ci/sysdeps.sh` installs it).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SERVER_PIDS: dict[str, int] = {}  # URL of a running served_app -> its server's pid (for memory readings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies (even by SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def served_app(index_dir: str | os.PathLike, timeout: float = 120, app: str | os.PathLike = REPO / "app.py",
               args: tuple[str, ...] = ()):
    """`streamlit run app.py -- --index INDEX_DIR [ARGS]` on a free localhost port; yields its URL; always stopped.

    `app`: another version of the page (e.g. an older app.py, for before/after timings); `args`: the
    page's own flags (e.g. "--share")."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false", "--", "--index", str(index_dir), *args]
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"streamlit-{port}.log", "wb")
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # an `app` outside the repository imports its packages
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}"
    SERVER_PIDS[url] = proc.pid
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"streamlit not healthy after {timeout:.0f} s; see {log.name}")
            time.sleep(0.3)
        yield url
    finally:
        SERVER_PIDS.pop(url, None)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


HEADERS = {"Search": "Search by example", "Clusters": "Clusters", "Map": "Map of the collection",
           "Duplicates": "Duplicates", "About": "About this index"}


def open_page(browser, url: str, width: int = 1400, height: int = 900, timeout_ms: int = 120_000):
    """A new tab on the app, waited until the script's first run has drawn the page list and a page."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    page.wait_for_selector("[data-testid='stSidebarNav'] a")
    page.wait_for_selector("[data-testid='stMain'] h2")
    return page


def goto_page(page, name: str) -> None:
    """Click `name` in the page list (no page load: the app reruns) and wait for its heading. On the
    page already, nothing is clicked: a click would rerun it, and a drop made before that rerun has
    drawn the uploader again is lost with the old one."""
    heading = f"[data-testid='stMain'] h2:has-text('{HEADERS[name]}')"
    if page.locator(heading).count():
        return
    page.locator("[data-testid='stSidebarNav'] a").filter(has_text=name).first.click()
    page.wait_for_selector(heading)


def upload(page, files: list[str | os.PathLike]) -> None:
    page.locator("[data-testid='stFileUploader'] input[type=file]").set_input_files([str(f) for f in files])


def hit_selector(query: int, rank: int) -> str:
    """The rank-th result of query `query`: a figure of the HTML grid, or (app.py before the grid
    became one HTML block, for before/after timings) its keyed container."""
    return f".st-key-results-{query} figure[data-hit='{rank}'], .st-key-results-{query}-hit-{rank}"


def first_result_text(page, query: int = 0) -> str:
    """Text of the first hit of query `query` once the grid is rendered."""
    hit = page.locator(hit_selector(query, 0))
    hit.wait_for(state="visible")
    return hit.inner_text()


def settle(page, ms: int = 500) -> None:
    """Wait until the script run has finished: no spinner, no stale (faded) element of the previous run."""
    page.wait_for_selector("[data-testid='stSpinner']", state="detached")
    page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0")
    page.wait_for_timeout(ms)  # let images and charts paint
