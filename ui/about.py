"""About page: what this index is, in plain words; how good its encoder is (the label-free copy
report); the technical details behind an expander. Run by app.py's navigation."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from encoders.copies import read_report, report_rows
from index.gallery import index_facts
from ui import data


def table(facts: dict[str, str]) -> None:
    st.table(pd.DataFrame.from_dict(facts, orient="index", columns=["Value"]).rename_axis("Field"))


def quality(loaded) -> None:
    report = read_report(loaded.manifest.encoder.get("path", ""))
    if report is None:
        return
    st.subheader("How well does it find a photo again? (no labels needed)")
    edited = report.get("edited", report.get("images", "?"))
    st.caption(f"{edited} photos of the collection were edited in memory (cropped, recoloured, mirrored, …): how "
               f"often an edited copy finds its original first, with this index's descriptions of the photos and "
               f"with their raw pixels.")
    rows = report_rows(report)
    st.table(pd.DataFrame([[None if v is None else round(v, 3) for v in r] for r in rows.values()],
                          columns=["encoder", "raw pixels"], index=pd.Index(list(rows), name="recall@1")))


def main() -> None:
    ix, loaded = data.opened()
    st.header("About this index")
    plain, technical = index_facts(loaded)
    table(plain)
    quality(loaded)
    with st.expander("Technical details"):
        table(technical)
        training = (loaded.manifest.encoder.get("config") or {}).get("training")
        if training:
            st.caption("Full training configuration")
            st.json(training, expanded=False)


if __name__ == "__main__":
    main()
