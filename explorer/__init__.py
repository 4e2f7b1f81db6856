"""FocalScope's core: losses, anchors, label assignment, dataset scans and detectors. Never imports streamlit."""

__version__ = "0.1.0"
