"""A real browser (Debian's Chromium via Playwright) on the running app: drops, clicks, the viewer,
another index, the shared mode. `window.__kept` set before a click and read after it proves that
no page load happened (a load starts a new window, a new session and empty uploads)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from bench.browser import CHROMIUM, chromium, first_result_text, goto_page, open_page, served_app, settle, upload
from tests.conftest import draw_shape_image

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} missing: apt-get install chromium (.ci/sysdeps.sh does)")


def data_root(index: Path) -> Path:
    return Path(json.loads((index / "manifest.json").read_text())["data_root"])


@pytest.fixture(scope="module")
def served(app_index):
    with served_app(app_index) as url, chromium() as browser:
        yield url, browser


@pytest.fixture(scope="module")
def page(served):
    return open_page(served[1], served[0])


def mark(page) -> None:
    page.evaluate("window.__kept = 1")


def no_page_load(page) -> bool:
    return page.evaluate("window.__kept") == 1


def query_shown(page, name: str):
    page.locator("[data-testid='stMain'] h3", has_text=f"Query: {name}").wait_for(state="visible")


def test_drop_image_shows_neighbour_grid(page, app_index, tmp_path):
    query = tmp_path / "dropped.png"
    shutil.copy(data_root(app_index) / "triangle_3_004.png", query)  # a copy of an indexed image
    upload(page, [query])
    text = first_result_text(page)
    assert "triangle_3_004.png" in text and "1.000" in text
    page.locator(".st-key-results-0 figure[data-hit='11'] img").wait_for(state="visible")  # k = 12 thumbnails
    assert page.get_by_text("neighbours in").count() >= 1
    assert page.locator("[data-testid='stException']").count() == 0


def test_corrupt_upload_shows_message(page, corrupt_png):
    page.reload()
    page.wait_for_selector("[data-testid='stFileUploader'] input[type=file]", state="attached")
    upload(page, [corrupt_png])
    # Streamlit may reuse the DOM node of the element that stood there before (the sample grid)
    # for a moment: wait for the message itself, not just for the keyed container
    msg = page.locator(".st-key-upload-error-0", has_text="corrupt.png: cannot be searched")
    msg.wait_for(state="visible", timeout=30_000)
    assert "corrupt.png: cannot be searched" in msg.inner_text()
    assert page.locator("[data-testid='stException']").count() == 0
    assert "Traceback" not in page.content()


def test_a_result_is_searched_in_place_and_back_returns_to_the_upload(served, app_index, tmp_path):
    page = open_page(served[1], served[0])
    query = tmp_path / "mine.png"
    shutil.copy(data_root(app_index) / "cross_3_000.png", query)
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("End")  # k = 48: every other image, the weak ones too
    expect(slider).to_have_value("48")
    upload(page, [query])
    first_result_text(page)
    assert page.locator(".st-key-results-0 .pg-divider").count() == 1  # where matches turn weak
    second = page.locator(".st-key-results-0 figure[data-hit='1']").get_attribute("data-path")
    mark(page)
    page.locator(".st-key-results-0 figure[data-hit='1'] a.pg-sim").click()  # its "similar"
    query_shown(page, second)
    assert no_page_load(page) and f"query={quote(second)}" in page.url
    assert page.get_by_role("slider").first.input_value() == "48"
    page.go_back()  # the browser's Back: the upload's results again
    query_shown(page, "mine.png")
    assert no_page_load(page) and "query=" not in page.url
    assert page.locator("[data-testid='stFileUploader']", has_text="mine.png").count() == 1  # still dropped


def test_viewer_from_a_cluster_and_a_mosaic_tile_searches_on_the_search_page(served, app_index):
    context = served[1].new_context(viewport={"width": 1400, "height": 900},
                                    permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(served[0])
    page.wait_for_selector("[data-testid='stMain'] h2")
    mark(page)
    goto_page(page, "Map")
    page.get_by_role("tab", name="Thumbnail mosaic").click()
    page.locator(".st-key-mosaic .pg-tile a.pg-img").first.click()
    page.get_by_role("dialog").wait_for(state="visible")
    page.keyboard.press("Escape")
    page.get_by_role("dialog").wait_for(state="detached")
    goto_page(page, "Clusters")
    cell = page.locator(".st-key-central-0 figure[data-hit='0']")
    path = cell.get_attribute("data-path")
    cell.locator("a.pg-img").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(state="visible")
    full = str(data_root(app_index) / path)
    dialog.locator("code", has_text=full).wait_for(state="visible")  # the full path
    dialog.get_by_text("40 × 40 pixels").wait_for(state="visible")  # the facts come after the path
    dialog.get_by_role("button", name="Copy path").click()
    dialog.get_by_role("button", name="Copied").wait_for(state="visible")
    assert page.evaluate("navigator.clipboard.readText()") == full
    dialog.get_by_role("button", name="Search similar").click()
    query_shown(page, path)
    assert no_page_load(page) and page.locator("[data-testid='stMain'] h2").inner_text() == "Search by example"
    assert page.locator("[data-testid='stException']").count() == 0
    context.close()


def test_another_index_stays_open_after_clicking_a_result(served, two_indexes):
    _, b = two_indexes
    page = open_page(served[1], served[0])
    sidebar = page.locator("section[data-testid='stSidebar']")
    sidebar.get_by_role("combobox", name="Index").click()
    page.get_by_role("option", name="Other folder…").click()
    box = sidebar.get_by_role("textbox", name="Index folder")
    box.fill(str(b))
    box.press("Enter")
    sidebar.get_by_text("33 photos").wait_for(state="visible")
    settle(page, 300)
    mark(page)
    cell = page.locator(".st-key-sample figure[data-hit='3']")
    path = cell.get_attribute("data-path")
    cell.locator("a.pg-sim").click()
    query_shown(page, path)
    assert no_page_load(page) and f"index={quote(str(b), safe='')}" in page.url
    assert sidebar.get_by_text("33 photos").count() == 1
    assert page.locator("[data-testid='stAlert']").count() == 0  # no "is not in the index"


def test_a_shared_page_refuses_another_folder(served, two_indexes):
    a, b = two_indexes
    with served_app(a, args=("--share",)) as url:
        page = served[1].new_page()
        page.set_default_timeout(120_000)
        page.goto(f"{url}/?index={quote(str(b), safe='')}")
        page.get_by_text("was not opened").wait_for(state="visible")
        sidebar = page.locator("section[data-testid='stSidebar']")
        assert sidebar.get_by_text("34 photos").count() == 1  # the command line's index
        assert sidebar.get_by_role("combobox", name="Index").count() == 0
        assert "index=" not in page.url


def build_command(app_index: Path, data: Path, index: Path) -> list[str]:
    """`build_index` of `data` into `index` with the app index's encoder, as its own process."""
    return [sys.executable, "-m", "pipelines.build_index", "--data", str(data), "--encoder",
            str(app_index.parent / "run"), "--out", str(index), "--workers", "0", "--no-progress"]


def test_the_page_follows_an_update_made_while_it_serves(served, app_index, tmp_path):
    """`build_index --update` runs while a browser moves between pages: every page draws from one whole
    index (the old or the new), and the first page drawn after the swap shows the new one and says so."""
    data, index = tmp_path / "data", tmp_path / "index"
    shutil.copytree(data_root(app_index), data)
    build = build_command(app_index, data, index)
    subprocess.run(build, check=True, capture_output=True)
    with served_app(index) as url:  # the module's browser: one Playwright per thread
        page = open_page(served[1], url)
        sidebar = page.locator("section[data-testid='stSidebar']")
        sidebar.get_by_text("34 photos").wait_for(state="visible")
        # every toast text the page ever shows: a toast lasts 4 s, and on a loaded machine the page that
        # showed it may still be drawing (Clusters groups the new index) when it has gone
        page.evaluate("""() => { window.toastsShown = [];
            new MutationObserver(() => document.querySelectorAll("[data-testid='stToast']").forEach(t => {
                if (!window.toastsShown.includes(t.innerText)) window.toastsShown.push(t.innerText); }))
            .observe(document.body, {childList: true, subtree: true, characterData: true}); }""")
        rng = np.random.default_rng(21)
        for i in range(6):
            draw_shape_image("triangle", rng).save(data / f"added_{i}.png")
        update = subprocess.Popen([*build, "--update"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen = []  # (photos in the sidebar, every toast shown so far) after each page drawn
        while update.poll() is None or not seen or seen[-1][0] != "40":
            goto_page(page, ["Clusters", "Search"][len(seen) % 2])
            settle(page, 100)
            assert page.locator("[data-testid='stException']").count() == 0
            photos = sidebar.get_by_text(" photos · ").inner_text().split(" photos")[0]
            if photos == "40" and all(n != "40" for n, _ in seen):  # the first page drawn from the new build:
                with contextlib.suppress(PlaywrightTimeout):  # its toast may paint a moment after the sidebar
                    page.wait_for_function("window.toastsShown.some(t => t.includes('updated while you were here'))",
                                           timeout=5000)
            seen.append((photos, " ".join(page.evaluate("window.toastsShown"))))
            assert len(seen) < 200, seen
        assert update.wait() == 0, update.stdout.read()
        assert {n for n, _ in seen} <= {"34", "40"}, seen
        first_new = next(i for i, (n, _) in enumerate(seen) if n == "40")
        assert all(n == "40" for n, _ in seen[first_new:])  # never back to the old build
        assert all("updated while you were here" not in toasts for _, toasts in seen[:first_new])
        assert "The index was updated while you were here: 40 photos (was 34)" in seen[first_new][1]
        goto_page(page, "Search")
        settle(page, 100)  # the drop lands on the uploader of a finished run
        query = tmp_path / "copy_of_added.png"
        shutil.copy(data / "added_3.png", query)
        upload(page, [query])
        text = first_result_text(page)
        assert "added_3.png" in text and "1.000" in text


def test_heic_and_avif_photos_are_indexed_and_found_by_a_dropped_copy(served, app_index, tmp_path):
    """An iPhone's HEIC and an AVIF in the folder are indexed, shown as thumbnails, and a dropped copy
    of each (the same file's bytes) finds it first at 1.000."""
    from PIL import Image

    import encoders.formats  # noqa: F401  (registers pillow-heif's HEIF reader and writer)

    data, index = tmp_path / "data", tmp_path / "index"
    shutil.copytree(data_root(app_index), data)
    rng = np.random.default_rng(5)
    draw_shape_image("ellipse", rng).resize((64, 64)).save(data / "IMG_0001.heic", format="HEIF", quality=90)
    draw_shape_image("cross", rng).resize((64, 64)).save(data / "IMG_0002.avif", format="AVIF", quality=90)
    assert Image.open(data / "IMG_0001.heic").format == "HEIF"
    subprocess.run(build_command(app_index, data, index), check=True, capture_output=True)
    paths = [item["path"] for item in json.loads((index / "manifest.json").read_text())["items"]]
    assert {"IMG_0001.heic", "IMG_0002.avif"} <= set(paths)
    with served_app(index) as url:  # the module's browser: one Playwright per thread
        page = open_page(served[1], url)
        names = ["IMG_0001.heic", "IMG_0002.avif"]
        queries = [tmp_path / f"dropped_{i}{Path(name).suffix}" for i, name in enumerate(names)]
        for name, query in zip(names, queries):
            shutil.copy(data / name, query)
        upload(page, queries)  # both at once: one grid each
        for i, name in enumerate(names):
            text = first_result_text(page, i)
            assert name in text and "1.000" in text
            thumb = page.locator(f".st-key-results-{i} figure[data-hit='0'] img")
            thumb.wait_for(state="visible")
            assert page.evaluate("(img) => img.naturalWidth", thumb.element_handle()) > 0  # the photo is drawn
        assert page.locator("[data-testid='stException']").count() == 0
        page.screenshot(path=str(tmp_path / "dropped.png"), full_page=True)
