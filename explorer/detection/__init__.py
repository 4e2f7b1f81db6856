"""Detection models: architectures and the device (``architectures``), reading untrusted checkpoints safely
(``checkpoints``), the three sources of weights (``loading``), dense outputs and torchvision's postprocess
(``outputs``), inference under the model's lock (``inference``), TP / FP / missed against ground truth
(``evaluation``), per-anchor loss maps (``lossmaps``), what the Live detections page draws (``view``), the demo model
(``demo_model``) and its training script (``train_demo``), and the benchmarked fast GPU path (``fast``).
"""
