"""What every page shares: the UI settings, the API client, the sidebar and the selected
use case (its detail as the API describes it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st
from pydantic_settings import BaseSettings, SettingsConfigDict

from tabops.config import UiSettings
from tabops.ui.client import ApiClient, ApiError
from tabops.ui.fields import display

__all__ = ["Context", "current", "explain", "load_settings", "sidebar"]

_CTX = "_tabops_context"
_CLIENT = "_tabops_client"
_FAILING = "_tabops_connection_failing"


class _UiEnvironment(BaseSettings):
    """Only the ``ui`` section of the settings: the UI needs no database or secret."""

    model_config = SettingsConfigDict(
        env_prefix="TABOPS_", env_nested_delimiter="__", extra="ignore"
    )
    ui: UiSettings = UiSettings()


def load_settings() -> UiSettings:
    """The UI settings from the environment (``TABOPS_UI__API_URL``, ...)."""
    return _UiEnvironment().ui


@dataclass
class Context:
    """The selected use case and the client to reach the API."""

    settings: UiSettings
    client: ApiClient
    name: str
    usecase: dict[str, Any]
    """``GET /usecases/{name}``: spec, champion version, threshold, metrics, example."""
    has_key: bool

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.usecase["spec"]
        return spec

    @property
    def classes(self) -> list[str]:
        classes: list[str] = self.spec["target"]["classes"]
        return classes

    @property
    def positive(self) -> str | None:
        positive: str | None = self.spec["target"].get("positive")
        return positive if self.spec["task"] == "binary" else None

    def label(self, cls: str) -> str:
        """The display label of a class."""
        return display(self.spec, cls)


def explain(error: ApiError, action: str = "") -> None:
    """Show an API error in words a user can act on."""
    doing = f"{action}: " if action else ""
    if error.status == 401:
        st.error(
            f"{doing}the API refused the key ({error.message}). Check the API key in the "
            "sidebar (under Connection).",
            icon=":material/key_off:",
        )
    elif error.status == 403:
        st.error(
            f"{doing}this needs an admin key ({error.message}). Enter one in the sidebar "
            "(under Connection).",
            icon=":material/lock:",
        )
    elif error.status == 0:
        st.error(f"{doing}{error.message}", icon=":material/cloud_off:")
    else:
        st.error(f"{doing}{error.message}", icon=":material/error:")
        for issue in error.details:
            row = f"row {issue.row}: " if issue.row is not None else ""
            st.caption(f"{row}{issue.field}: {issue.reason}")


def _client(url: str, key: str, timeout_s: float) -> ApiClient:
    cached: tuple[tuple[str, str], ApiClient] | None = st.session_state.get(_CLIENT)
    if cached is not None and cached[0] == (url, key):
        return cached[1]
    if cached is not None:
        cached[1].close()
    client = ApiClient(url, key or None, timeout_s)
    st.session_state[_CLIENT] = ((url, key), client)
    return client


def sidebar(settings: UiSettings) -> Context | None:
    """Draw the sidebar (use case selector, connection) and keep the page context.

    Returns:
        The context, or None when the API cannot be used (the reason is shown).
    """
    st.session_state.pop(_CTX, None)
    with st.sidebar:
        st.markdown("### :material/insights: tabops")
        # open while the API refuses the key or cannot be reached: that is where to fix it
        failing = bool(st.session_state.get(_FAILING))
        with st.expander("Connection", expanded=failing, icon=":material/settings_ethernet:"):
            url = st.text_input("API URL", value=settings.api_url, key="api_url")
            default_key = settings.api_key.get_secret_value() if settings.api_key else ""
            key = st.text_input(
                "API key",
                value=default_key,
                type="password",
                key="api_key",
                help="A predict key scores and sends feedback; an admin key also reads the "
                "audit trail, trains and promotes. Leave empty if the API allows anonymous "
                "predictions.",
            )
        client = _client(url.strip(), key.strip(), settings.timeout_s)
        try:
            usecases = client.usecases()
        except ApiError as exc:
            if not failing and (exc.auth or exc.status == 0):
                st.session_state[_FAILING] = True
                st.rerun()
            explain(exc, "Cannot list the use cases")
            return None
        st.session_state[_FAILING] = False
        if not usecases:
            st.warning("The API serves no use case.")
            return None
        names = [u["name"] for u in usecases]
        titles = {u["name"]: u["title"] for u in usecases}
        wanted = st.query_params.get("usecase")
        index = names.index(wanted) if wanted in names else 0
        name = st.selectbox(
            "Use case",
            names,
            index=index,
            format_func=lambda n: f"{titles[n]} ({n})",
            key="usecase",
        )
        st.query_params["usecase"] = name
        try:
            detail = client.usecase(name)
        except ApiError as exc:
            explain(exc, f"Cannot read use case {name}")
            return None
        version = detail.get("champion_version")
        if version:
            st.caption(f"Champion: version {version} · {detail.get('scoring_path')}")
        else:
            st.warning(f"No model serves {name} yet ({detail.get('status')}).")
        st.caption(f"API: {client.base_url}" + (" · key set" if key else " · no key"))
    context = Context(settings, client, name, detail, bool(key))
    st.session_state[_CTX] = context
    return context


def current() -> Context:
    """The context the main script prepared for this run (stops the page without one)."""
    context: Context | None = st.session_state.get(_CTX)
    if context is None:
        st.info("Connect to the API in the sidebar to use this page.")
        st.stop()
    assert context is not None
    return context
