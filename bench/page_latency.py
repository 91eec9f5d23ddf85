"""Exploring the page in a real browser (Chromium via Playwright): how long a search from a result,
the photo viewer and a switch to each page take to answer, in one session as a person uses it.

    python bench/page_latency.py [--index indexes/demo] [-n 20]

After one untimed warm-up round, each of n rounds (a new result each time):
- "search_from_result": click "similar" under a result; stops when the new query's k-th
  thumbnail has painted;
- "viewer": click a result's thumbnail; stops when the dialog's photo has painted (closed after);
- "switch_to_<page>": click Clusters, Map, Duplicates, About, then Search in the page list;
  stops when that page's content is drawn (its heading, its main element, nothing stale).
The clock is read on every animation frame (`polling="raf"`). No step may load the page again
(`window.__kept` survives). Writes bench/results/page_latency.json: p50 / p95 per action.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import HEADERS, REPO, chromium, first_result_text, open_page, served_app, upload  # noqa: E402

K = 12  # the page's default k
DRAWN = {"Clusters": ".st-key-central-0 figure img", "Map": "[data-testid='stVegaLiteChart'] canvas, "
         "[data-testid='stVegaLiteChart'] svg", "Duplicates": "[data-testid='stDownloadButton']",
         "About": "[data-testid='stTable']", "Search": f".st-key-results-0 figure[data-hit='{K - 1}'] img"}
DONE = """([heading, drawn]) => {
    const h = document.querySelector("[data-testid='stMain'] h2");
    if (!h || !h.innerText.startsWith(heading)) return false;
    if (document.querySelector("[data-stale='true'], [data-testid='stSpinner']")) return false;
    const el = document.querySelector(drawn);
    return !!el && (el.tagName !== 'IMG' || (el.complete && el.naturalWidth > 0));
}"""
QUERY_DONE = """([name, sel]) => {
    const q = [...document.querySelectorAll("[data-testid='stMain'] h3")].some(h => h.innerText === 'Query: ' + name);
    const img = document.querySelector(sel);
    return q && !!img && img.complete && img.naturalWidth > 0 && !document.querySelector("[data-stale='true']");
}"""
VIEWER_DONE = """() => { const img = document.querySelector("[role='dialog'] [data-testid='stImage'] img");
    return !!img && img.complete && img.naturalWidth > 0; }"""


def timed(page, action, predicate: str, arg=None) -> float:
    t0 = time.perf_counter()
    action()
    page.wait_for_function(predicate, arg=arg, polling="raf")
    return (time.perf_counter() - t0) * 1e3


def one_round(page, rank: int) -> dict[str, float]:
    """Search from the rank-th result, open the viewer on the first one, visit every page."""
    out = {}
    cell = page.locator(f".st-key-results-0 figure[data-hit='{rank}']")
    name = cell.get_attribute("data-path")
    out["search_from_result"] = timed(page, lambda: cell.locator("a.pg-sim").click(), QUERY_DONE,
                                      [name, DRAWN["Search"]])
    first = page.locator(".st-key-results-0 figure[data-hit='0'] a.pg-img")
    out["viewer"] = timed(page, first.click, VIEWER_DONE)
    page.keyboard.press("Escape")
    page.get_by_role("dialog").wait_for(state="detached")
    for name in ("Clusters", "Map", "Duplicates", "About", "Search"):
        link = page.locator("[data-testid='stSidebarNav'] a").filter(has_text=name).first
        out[f"switch_to_{name.lower()}"] = timed(page, link.click, DONE, [HEADERS[name], DRAWN[name]])
    assert page.evaluate("window.__kept") == 1, "a page load happened"
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", default=str(REPO / "indexes" / "demo"))
    p.add_argument("-n", type=int, default=20, help="timed rounds")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "page_latency.json"))
    p.add_argument("--note", default="", help="what else the machine was doing, for the record")
    args = p.parse_args(argv)
    manifest = json.loads((Path(args.index) / "manifest.json").read_text())
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, served_app(args.index) as url, chromium() as browser:
        page = open_page(browser, url)
        query = Path(tmp) / ("query" + Path(manifest["items"][0]["path"]).suffix)
        shutil.copy(Path(manifest["data_root"]) / manifest["items"][0]["path"], query)
        upload(page, [query])
        first_result_text(page)
        page.evaluate("window.__kept = 1")
        for n in range(args.n + 1):
            got = one_round(page, 1 + n % (K - 1))
            if n:  # round 0 warms the caches (clusters, map, duplicates)
                for action, ms in got.items():
                    times.setdefault(action, []).append(ms)
            print(f"round {n}{' (warm-up)' if not n else ''}: "
                  + ", ".join(f"{a} {ms:.0f} ms" for a, ms in got.items()), flush=True)
    result = {
        "what": "one browser session on the page: search from a result, the photo viewer, switching pages; "
                "ms until the answer has painted",
        "index": str(Path(args.index).resolve()), "images": manifest["count"], "rounds": args.n, "k": K,
        "actions": {a: {"p50_ms": round(float(np.percentile(t, 50)), 1), "p95_ms": round(float(np.percentile(t, 95)),
                        1), "max_ms": round(float(max(t)), 1)} for a, t in times.items()},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"{platform.system()} {platform.release()}, Chromium via Playwright, CPU torch; load average "
                   f"{os.getloadavg()[0]:.1f} at the end",
        "note": args.note, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for a, r in result["actions"].items():
        print(f"{a:24s} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
