"""Plotly figure builders, one module per page area; each returns a go.Figure."""
