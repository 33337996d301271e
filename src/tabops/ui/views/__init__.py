"""The UI's pages, one script per page, run by Streamlit's navigation (see ``ui/app.py``)."""
