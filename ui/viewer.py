"""The photo viewer: a thumbnail clicked in any grid opens the photo large (`st.dialog`) with its
full path, pixel size, file size and date taken, and "Search similar" / "Copy path".

    open_asked(ix)   opens the viewer when a grid asked for it (`st.session_state.viewing`)
"""
from __future__ import annotations

import io
import time

import streamlit as st

from encoders.imagefolder import UnreadableImage, open_rgb, thumbnail
from index.gallery import photo_facts
from index.store import IndexLoadError
from ui import data, state
from ui.grid import markdown_literal

VIEW_PX = 1200
SMALL_PX = 512  # smaller photos are enlarged to this, in sharp pixels
COPY_CSS = """
button {font:inherit;font-size:0.9rem;padding:0.4rem 0.8rem;border-radius:0.5rem;cursor:pointer;
        border:1px solid rgba(49,51,63,0.2);background:white;color:inherit;width:100%}
button:hover {border-color:#ff4b4b;color:#ff4b4b}
"""
COPY_JS = """
export default function(component) {
  const { data, parentElement } = component;
  const button = parentElement.querySelector('button');
  button.onclick = async () => {
    try {
      await navigator.clipboard.writeText(data.path);
    } catch (e) {  // no clipboard API (a page served over plain http to another machine)
      const t = document.createElement('textarea');
      t.value = data.path;
      document.body.appendChild(t);
      t.select();
      document.execCommand('copy');
      t.remove();
    }
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = 'Copy path'; }, 2000);
  };
}
"""
_copy_button = st.components.v2.component("copy_path", html="<button type='button'>Copy path</button>",
                                          css=COPY_CSS, js=COPY_JS)


@st.cache_data(show_spinner=False, max_entries=64)
def large_jpeg(index_dir: str, stamp: int, path: str) -> bytes:
    """The photo at most VIEW_PX on its longer side, as JPEG (decoded at a reduced scale when it is one)."""
    img = open_rgb(data.get_index(index_dir, stamp).image_file(path), draft_size=VIEW_PX)
    if max(img.size) > VIEW_PX or max(img.size) < SMALL_PX:
        img = thumbnail(img, VIEW_PX if max(img.size) > VIEW_PX else SMALL_PX)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def file_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB" if n >= 1e4 else f"{n:,} bytes"


def facts_markdown(facts, mtime_ns: int | None) -> str:
    mp = facts.width * facts.height / 1e6
    lines = [f"**Size** · {facts.width:,} × {facts.height:,} pixels" + (f" ({mp:.1f} megapixels)" if mp >= 0.1 else ""),
             f"**File** · {file_size(facts.bytes)}",
             f"**Taken** · {facts.taken}" if facts.taken else "**Taken** · no date in the file (EXIF)"]
    if mtime_ns:
        lines.append(f"**File changed** · {time.strftime('%Y-%m-%d %H:%M', time.localtime(mtime_ns / 1e9))}")
    return "  \n".join(lines)


@st.dialog("Photo", width="large")
def viewer(ix: data.Ix, path: str) -> None:
    if st.session_state.get("to_search"):  # "Search similar" was clicked: the whole page reruns, without me
        st.rerun()
    loaded = data.get_index(*ix)
    try:
        facts = photo_facts(loaded, path)
        image = large_jpeg(*ix, path)
    except (IndexLoadError, UnreadableImage) as e:
        st.error(f"{markdown_literal(path)}: cannot be shown ({e}).")
        return
    left, right = st.columns([3, 2], gap="medium")
    left.image(image, width="stretch")
    with right.container(key="viewer-facts"):
        st.markdown(f"**{markdown_literal(path.rsplit('/', 1)[-1])}**")
        st.caption("Full path")
        st.code(str(facts.path), language=None, wrap_lines=True)
        st.markdown(facts_markdown(facts, loaded.manifest.items[loaded.row_of(path)].mtime_ns))
        st.button("Search similar", type="primary", key="viewer-search", width="stretch",
                  on_click=state.search_this, args=(path,))
        _copy_button(data={"path": str(facts.path)}, key="viewer-copy")


def open_asked(ix: data.Ix) -> None:
    """The viewer, once, for the photo a grid's click asked for."""
    path = st.session_state.pop("viewing", None)
    if path:
        viewer(ix, path)
