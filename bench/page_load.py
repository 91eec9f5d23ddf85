"""The search page under load: N concurrent real browser sessions (Playwright contexts in Debian's
Chromium) on one server, each dropping photos and opening the clusters for a given time.

    python bench/page_load.py [--index indexes/demo] [--sessions 1,4,16,32] [--seconds 120]
    python bench/page_load.py --index INDEX --smoke        # 1 session, a few seconds (tests)

Each session loops: open the page, drop an indexed photo (copied under a new name) on the
uploader and time it until the first result's thumbnail is shown (drop-to-grid); then open
Clusters from the page list and wait until its most central photos are drawn. An error is any failed wait or a
Streamlit exception box. The server's RSS is sampled every 0.5 s. Writes p50/p95 drop-to-grid,
errors, iterations and peak/end RSS per N to bench/results/page_load.json and a PNG beside it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import CHROMIUM, CHROMIUM_ARGS, REPO, SERVER_PIDS, hit_selector, served_app  # noqa: E402

FIRST_IMAGE = f"{hit_selector(0, 0).replace(',', ' img,')} img"  # the first result's thumbnail
FIRST_IMAGE_SHOWN = """sel => { const img = document.querySelector(sel);
    return !!img && img.complete && img.naturalWidth > 0; }"""


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def session(browser, url: str, photos: list[Path], deadline: float, out: dict, wait_s: float) -> None:
    """One visitor: drop a photo, wait for the grid, page the clusters; until the deadline. A wait
    longer than `wait_s` is an error (the visitor gave up)."""
    ctx = await browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(wait_s * 1e3)
    n = 0
    while time.perf_counter() < deadline:
        page = await ctx.new_page()
        try:
            await page.goto(url)
            await page.wait_for_selector("[data-testid='stFileUploader'] input[type=file]", state="attached")
            t0 = time.perf_counter()
            await page.locator("[data-testid='stFileUploader'] input[type=file]").set_input_files(
                str(photos[n % len(photos)]))
            await page.wait_for_function(FIRST_IMAGE_SHOWN, arg=FIRST_IMAGE, polling="raf")
            out["drop_ms"].append((time.perf_counter() - t0) * 1e3)
            await page.locator("[data-testid='stSidebarNav'] a").filter(has_text="Clusters").first.click()
            await page.wait_for_function(CLUSTERS_DRAWN, polling="raf")
            if await page.locator("[data-testid='stException']").count():
                raise RuntimeError("the page shows an exception")
            out["iterations"] += 1
        except Exception as e:  # noqa: BLE001 (every failure is counted and reported)
            out["errors"].append(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        finally:
            await page.close()
        n += 1
    await ctx.close()


CLUSTERS_DRAWN = """() => {
    const h = document.querySelector("[data-testid='stMain'] h2");
    const img = document.querySelector(".st-key-central-0 figure img");
    return !!h && h.innerText.startsWith("Clusters") && !!img && img.complete && img.naturalWidth > 0;
}"""


async def load_level(url: str, sessions: int, seconds: float, photos: list[Path], wait_s: float) -> dict:
    from playwright.async_api import async_playwright

    out = {"drop_ms": [], "errors": [], "iterations": 0}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(session(browser, url, photos[i::sessions] or photos, deadline, out, wait_s)
                               for i in range(sessions)))
        await browser.close()
    return out


def sample_rss(pid: int, stop: threading.Event, samples: list[float]) -> None:
    while not stop.wait(0.5):
        samples.append(rss_mb(pid))


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = result["levels"]
    n = [lv["sessions"] for lv in levels]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=120)
    a.plot(n, [lv["p50_ms"] for lv in levels], "o-", label="p50")
    a.plot(n, [lv["p95_ms"] for lv in levels], "s-", label="p95")
    a.set(xlabel="concurrent sessions", ylabel="drop-to-grid (ms)", xscale="log", title="latency")
    a.legend()
    b.plot(n, [lv["rss_peak_mb"] for lv in levels], "o-", label="peak")
    b.plot(n, [lv["rss_end_mb"] for lv in levels], "s-", label="end")
    b.set(xlabel="concurrent sessions", ylabel="server RSS (MB)", xscale="log", title="memory")
    b.legend()
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", default=str(REPO / "indexes" / "demo"))
    p.add_argument("--sessions", default="1,4,16,32", help="comma-separated numbers of concurrent sessions")
    p.add_argument("--seconds", type=float, default=120, help="time each level runs")
    p.add_argument("--photos", type=int, default=64, help="different indexed photos the sessions drop")
    p.add_argument("--wait-s", type=float, default=180, help="a page wait longer than this is an error")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "page_load.json"))
    p.add_argument("--smoke", action="store_true", help="1 session for 5 s (a test that the bench runs)")
    args = p.parse_args(argv)
    levels = [1] if args.smoke else [int(s) for s in args.sessions.split(",")]
    seconds = 5.0 if args.smoke else args.seconds
    manifest = json.loads((Path(args.index) / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    picks = rng.choice(manifest["count"], min(args.photos, manifest["count"]), replace=False)
    result = {"index": str(Path(args.index).resolve()), "images": manifest["count"], "seconds_per_level": seconds,
              "error_after_s": args.wait_s,
              "what": "drop-to-first-result-thumbnail per upload, then Clusters page stepped once; per session "
                      "loop, all sessions in one Chromium, one server",
              "levels": []}
    with tempfile.TemporaryDirectory() as tmp, served_app(args.index) as url:
        photos = []
        for j, i in enumerate(picks):
            rel = manifest["items"][int(i)]["path"]
            photos.append(Path(tmp) / f"drop_{j:03d}{Path(rel).suffix}")
            shutil.copy(Path(manifest["data_root"]) / rel, photos[-1])
        pid = SERVER_PIDS[url]
        for n in levels:
            samples, stop = [rss_mb(pid)], threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(pid, stop, samples))
            sampler.start()
            try:
                out = asyncio.run(load_level(url, n, seconds, photos, args.wait_s))
            finally:
                stop.set()
                sampler.join()
            t = np.array(out["drop_ms"] or [np.nan])
            level = {"sessions": n, "uploads": len(out["drop_ms"]), "iterations": out["iterations"],
                     "p50_ms": round(float(np.percentile(t, 50)), 1), "p95_ms": round(float(np.percentile(t, 95)), 1),
                     "errors": len(out["errors"]), "error_examples": sorted(set(out["errors"]))[:5],
                     "rss_start_mb": round(samples[0], 1), "rss_peak_mb": round(max(samples), 1),
                     "rss_end_mb": round(rss_mb(pid), 1)}
            result["levels"].append(level)
            print(json.dumps(level), flush=True)
    result["machine"] = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs shared, "
                         f"{platform.system()} {platform.release()}, Chromium via Playwright, CPU torch")
    result["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out_path.with_suffix(".png"))
    print(f"wrote {out_path} and {out_path.with_suffix('.png')}")
    return 1 if any(lv["errors"] for lv in result["levels"]) else 0


if __name__ == "__main__":
    sys.exit(main())
