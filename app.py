"""Image search in the browser: `streamlit run app.py [-- --index INDEX_DIR] [--share]` (default: indexes/demo).

Search by example, clusters, a 2-D map, duplicates, about: one page each in ui/, computed in
index/ and encoders/. This file only wires them: the page list (`st.navigation`), the index the
session has open (ui/sidebar.py), and what a session keeps across pages (ui/state.py).
`--share`: the page serves this index only (also when the server listens beyond this machine).
"""
from __future__ import annotations

import streamlit as st

from ui import sidebar, state


def main() -> None:
    st.set_page_config(page_title="Image search", layout="wide")
    state.keep_widgets()
    search = st.Page("ui/search.py", title="Search", icon=":material/search:", default=True)
    nav = st.navigation([search,
                         st.Page("ui/clusters.py", title="Clusters", icon=":material/workspaces:"),
                         st.Page("ui/map.py", title="Map", icon=":material/map:"),
                         st.Page("ui/duplicates.py", title="Duplicates", icon=":material/content_copy:"),
                         st.Page("ui/about.py", title="About", icon=":material/info:")])
    if st.session_state.pop("to_search", False) and nav.url_path != search.url_path:
        st.switch_page(search, query_params=st.query_params.to_dict())  # a photo's "similar" on another page
    if sidebar.open_index(state.launch()) is not None:
        nav.run()


main()
