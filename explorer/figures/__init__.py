"""Plotly figure builders, one module per page area; each returns a go.Figure."""

#: One colour per kind of anchor, shared by the Loss lab's batch figures and the Live detections loss maps
#: ("negative" is the Loss lab's positives-vs-negatives split).
ANCHOR_GROUP_COLORS: dict[str, str] = {
    "easy negative": "#1f77b4",
    "hard negative": "#ff7f0e",
    "positive": "#2ca02c",
    "ignored": "#bcbd22",
    "negative": "#1f77b4",
}
