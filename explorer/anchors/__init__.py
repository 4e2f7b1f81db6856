"""Anchors: ``grid`` (configurations, conventions, the anchor grid), ``counts`` (how many anchors and why the quoted
numbers differ), ``iou`` (box IoU and the sparse IoU), ``assignment`` (the one result type), one assigner per file
(``max_iou``, ``atss``, ``tal`` with mmdet's and Ultralytics' definitions, ``simota``; ``dynamic`` is what the
prediction-aware ones share), ``stats`` (recall, threshold sweep, per-level counts) and ``lab`` (the Anchor lab's view
model)."""
