"""The Duplicates page in Chromium: the calibrated sentence, keepers and the move plan, and a screenshot.

    python -m pipelines.duplicates --index DIR          # calibrates and writes DIR/duplicates.json
    python bench/duplicates_page.py --index DIR [--out docs/duplicates.png]

Fails (exit 1) unless the page shows the sentence saved in DIR/duplicates.json, names a keeper
for a group, and offers the move plan with the number of extras it lists.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import REPO, chromium, goto_page, open_page, served_app, settle  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True)
    p.add_argument("--out", default=str(REPO / "docs" / "duplicates.png"))
    args = p.parse_args(argv)
    saved = json.loads((Path(args.index) / "duplicates.json").read_text())
    sentence = saved["reason"][:1].upper() + saved["reason"][1:]
    with served_app(args.index) as url, chromium() as browser:
        page = open_page(browser, url)
        goto_page(page, "Duplicates")
        page.get_by_role("button", name="Download these groups").wait_for()
        settle(page, 800)
        shown = page.locator("[data-testid='stAlert']").first.inner_text()
        keepers = page.get_by_text(" · keep ").count()
        plan = page.get_by_role("button", name="Download the move plan").inner_text()
        page.set_viewport_size({"width": 1400, "height": 1300})
        settle(page, 800)
        page.screenshot(path=args.out)
    extras = sum(len(g["paths"]) - 1 for g in saved["groups"])
    flat = shown.replace("\n", " ").replace("≤", "<=")  # markdown typesets <=
    checks = {"sentence shown": sentence.rstrip(".") in flat,
              "keepers named": keepers > 0, f"move plan offered ({extras} extras)": f"{extras} extras" in plan}
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(f"page says: {shown!r}\nwrote {args.out}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
