"""The model scan: a detector over a whole dataset, where each image's loss goes (``image_stats``), any focal
(alpha, gamma) from binned statistics (``reweight``), detections against the labels and likely label problems
(``detections``), the driver (``run``) and its resumable on-disk parts (``store``)."""
