"""The web UI: a Streamlit multi-page app over the HTTP API (``tabops ui``).

It calls the API only (:mod:`tabops.ui.client`), never the database or MLflow, so it
works in front of remote replicas. Every form and table comes from the API's description
of a use case (``GET /usecases/{name}``).
"""
