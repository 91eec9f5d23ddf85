"""How long the Clusters page takes to answer a K picked in it, in a real browser (Chromium via Playwright),
and what it shows: the first time a K is asked (clustered in the page's process) and when asked again
(cached), for each K in turn; then a screenshot of the Unsorted photos.

    python bench/cluster_page.py --index INDEX_DIR [-k 10 25] [--out bench/results/cluster_page.json]

The clock starts at the pick and stops when the page says "**K groups**" with nothing stale or spinning.
Writes the JSON (seconds per K, first and again; the Unsorted entry shown) and a PNG of the Unsorted photos.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import REPO, chromium, goto_page, open_page, served_app, settle  # noqa: E402
from bench.machine import machine_line  # noqa: E402
from bench.screenshots import choose  # noqa: E402


def pick(page, k: int) -> float:
    """Seconds from choosing K in the page's chooser to the page drawn for it."""
    t0 = time.perf_counter()
    choose(page, "Number of clusters", str(k))  # waits for the run to end: no spinner, nothing stale
    page.get_by_text(f"{k} groups", exact=True).first.wait_for(state="visible", timeout=600_000)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True, type=Path)
    p.add_argument("-k", type=int, nargs="+", default=[10, 25])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cluster_page.json")
    a = p.parse_args(argv)
    images = json.loads((a.index / "manifest.json").read_text())["count"]
    out = {"machine": machine_line(), "index": str(a.index), "images": images, "k": {}}
    with served_app(a.index) as url, chromium() as browser:
        page = open_page(browser, url)
        goto_page(page, "Clusters")
        settle(page)
        for k in a.k:
            first = pick(page, k)
            choose(page, "Number of clusters", "automatic")
            again = pick(page, k)
            out["k"][str(k)] = {"first_s": round(first, 2), "again_s": round(again, 2)}
            print(f"K = {k}: {first:.1f} s the first time, {again:.1f} s again", flush=True)
        box = page.get_by_role("combobox", name="Cluster", exact=True)
        box.click()
        box.fill("Unsorted")  # the list shows only its first options until filtered
        unsorted = page.get_by_role("option", name=re.compile("^Unsorted"))
        if unsorted.count():
            out["unsorted_option"] = unsorted.first.inner_text()
            unsorted.first.click()
            settle(page)
        else:
            page.keyboard.press("Escape")
        page.get_by_text("Browse one cluster").scroll_into_view_if_needed()
        page.screenshot(path=str(a.out.with_suffix(".png")))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
