"""Detection models: loading (weights, checkpoints), inference (eager and fast), evaluation and loss maps, the demo
model and its training.
"""
