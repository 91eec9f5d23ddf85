"""Screenshots of every page of the app, taken by Chromium, for the docs.

    python bench/screenshots.py [--index indexes/demo] [--out docs]

Writes docs/search.png, viewer.png, clusters.png, map.png, map_mosaic.png, duplicates.png, about.png.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import REPO, chromium, first_result_text, goto_page, open_page, served_app, settle, upload  # noqa: E402


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label`."""
    box = page.get_by_role("combobox", name=label)
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_function(f"document.querySelector('input[aria-label=\"{label}\"]').value === '{option}'")
    settle(page)


def shoot(page, out: Path, height: int) -> None:
    page.set_viewport_size({"width": 1400, "height": height})
    settle(page, 800)
    page.screenshot(path=str(out))
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", default=str(REPO / "indexes" / "demo"))
    p.add_argument("--out", default=str(REPO / "docs"))
    p.add_argument("--query", default="fashion-mnist/test_00000.png", help="indexed image uploaded as the query")
    p.add_argument("--k-clusters", default="10", help="K shown on the Clusters and Map pages")
    args = p.parse_args(argv)
    out = Path(args.out)
    data_root = Path(json.loads((Path(args.index) / "manifest.json").read_text())["data_root"])
    with tempfile.TemporaryDirectory() as tmp, served_app(args.index) as url, chromium() as browser:
        query = Path(tmp) / Path(args.query).name
        shutil.copy(data_root / args.query, query)
        page = open_page(browser, url)
        upload(page, [query])
        first_result_text(page)
        page.locator(".st-key-results-0 figure[data-hit='11'] img").wait_for(state="visible")
        shoot(page, out / "search.png", 1350)
        page.locator(".st-key-results-0 figure[data-hit='1'] a.pg-img").click()
        page.get_by_role("dialog").locator("img").wait_for(state="visible")
        shoot(page, out / "viewer.png", 900)
        page.keyboard.press("Escape")

        goto_page(page, "Clusters")
        choose(page, "Number of clusters", args.k_clusters)
        page.wait_for_selector(f"text=Cluster {int(args.k_clusters) - 1}")
        shoot(page, out / "clusters.png", 2000)

        goto_page(page, "Map")
        choose(page, "Colour by clusters", args.k_clusters)
        page.wait_for_selector("[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg")
        page.mouse.click(10, 10)  # close any open dropdown
        shoot(page, out / "map.png", 900)
        page.get_by_role("tab", name="Thumbnail mosaic").click()
        page.wait_for_selector(".st-key-mosaic .pg-tile img")
        shoot(page, out / "map_mosaic.png", 1050)

        goto_page(page, "Duplicates")
        page.get_by_role("button", name="Download these groups").wait_for()
        shoot(page, out / "duplicates.png", 1500)

        goto_page(page, "About")
        shoot(page, out / "about.png", 900)
    return 0


if __name__ == "__main__":
    sys.exit(main())
