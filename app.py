"""`streamlit run app.py [-- --audit DIR --uri URI]`: the interactive audit. Navigation and the shared sidebar only.

To add a page, add one line to PAGES.
"""

import streamlit as st

from app_pages.shared import sidebar

PAGES = [
    st.Page("app_pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("app_pages/review.py", title="Review", icon=":material/checklist:"),
    st.Page("app_pages/map.py", title="Map", icon=":material/scatter_plot:"),
    st.Page("app_pages/class_page.py", title="Class", icon=":material/category:"),
    st.Page("app_pages/search.py", title="Search", icon=":material/search:"),
    st.Page("app_pages/findings.py", title="Findings", icon=":material/fact_check:"),
    st.Page("app_pages/guidance.py", title="Guidance", icon=":material/lightbulb:"),
    st.Page("app_pages/run_audit.py", title="Run an audit", icon=":material/play_arrow:"),
]

# A page icon of its own: without it the browser fetches each page's material icon from a font CDN as favicon.
st.set_page_config(page_title="taxonomy-auditor", page_icon="🎞️", layout="wide")
navigation = st.navigation(PAGES)
st.session_state["notice_slot"] = st.empty()  # the store's notice, above the page's own content
sidebar()
navigation.run()
