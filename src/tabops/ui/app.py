"""The tabops web UI: ``streamlit run`` this file (``tabops ui`` does).

The sidebar picks the use case and the connection; each page is a script under
``views/`` and reads the shared context (:func:`tabops.ui.context.current`).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from tabops.ui.context import load_settings, sidebar

# not "pages/": Streamlit would take that folder for its legacy multi-page mode and
# run a page without this script (no sidebar, no context)
_PAGES = Path(__file__).parent / "views"


def main() -> None:
    """One run of the app: page setup, sidebar, then the selected page."""
    st.set_page_config(page_title="tabops", page_icon=":material/insights:", layout="wide")
    settings = load_settings()
    navigation = st.navigation(
        {
            "Use": [
                st.Page(_PAGES / "predict.py", title="Predict", icon=":material/person_search:"),
                st.Page(_PAGES / "batch.py", title="Batch", icon=":material/table_view:"),
                st.Page(_PAGES / "feedback.py", title="Feedback", icon=":material/fact_check:"),
            ],
            "Operate": [
                st.Page(_PAGES / "monitoring.py", title="Monitoring", icon=":material/monitoring:"),
                st.Page(_PAGES / "models.py", title="Models", icon=":material/model_training:"),
            ],
        }
    )
    sidebar(settings)
    navigation.run()


main()
