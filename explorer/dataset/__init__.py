"""Datasets: the COCO reader, one image's boxes from any source, and the dataset scan (config, numpy and torch paths,
reference).
"""
