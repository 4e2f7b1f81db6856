"""Anchors: the grids and their conventions, sparse IoU, the assigners, and the Anchor lab's view model."""
