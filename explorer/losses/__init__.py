"""Losses of dense detection, one module per family as mmdet splits them, plus the Loss lab's tables.

classification (CE, α-CE, focal, FL*), soft_targets (QFL, Varifocal, DFL), box (L1, smooth L1, the IoU family,
Rectified IoU), checks (their shared argument checks); curves and box_curves (the tables behind the Loss lab's
figures); budget (the simulated batch: where the loss and the gradient go).
"""
