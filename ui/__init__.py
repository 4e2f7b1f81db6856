"""Streamlit-aware helpers shared by the pages (cached wrappers, common widgets)."""
