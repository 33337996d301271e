"""The tabops web UI: ``streamlit run`` this file (``tabops ui`` does).

The sidebar picks the use case and the connection; each page is a script under
``views/`` and reads the shared context (:func:`tabops.ui.context.current`).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import streamlit as st

from tabops.ui.context import load_settings, sidebar

# not "pages/": Streamlit would take that folder for its legacy multi-page mode and
# run a page without this script (no sidebar, no context)
_PAGES = Path(__file__).parent / "views"


def _page_of(path: Path) -> dict[str, Any] | None:
    """A view's ``PAGE`` entry, read from its source (a page runs only when it is shown)."""
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "PAGE" for t in node.targets
        ):
            page: dict[str, Any] = ast.literal_eval(node.value)
            return page
    return None


def pages() -> dict[str, list[Any]]:
    """Every script of ``views/`` that declares a ``PAGE``, by section, in page order: a
    new page is one new file."""
    found = [(p, page) for p in sorted(_PAGES.glob("*.py")) if (page := _page_of(p))]
    found.sort(key=lambda item: item[1]["order"])
    sections: dict[str, list[Any]] = {}
    for path, page in found:
        sections.setdefault(page["section"], []).append(
            st.Page(path, title=page["title"], icon=page["icon"])
        )
    return sections


def main() -> None:
    """One run of the app: page setup, sidebar, then the selected page."""
    st.set_page_config(page_title="tabops", page_icon=":material/insights:", layout="wide")
    settings = load_settings()
    navigation = st.navigation(pages())
    sidebar(settings)
    navigation.run()


main()
