"""Datasets: the COCO reader, one image's boxes from any source, and the dataset scan.

- ``coco``: the reader (``load_coco``, ``CocoDataset``, ``parse_json_lean``); its record checks in
  ``coco_records`` (images, categories), ``coco_annotations`` and ``coco_problems`` (the problems table);
- ``image_boxes``: ground-truth boxes of one image for the Anchor lab (COCO JSON, YOLO .txt, table rows);
- ``scan``: the driver (``scan_dataset``) over ``scan_config``, ``scan_result``; the fast exact path
  ``scan_numpy`` with ``scan_geometry`` and ``scan_union``; ``scan_torch`` (CUDA); ``scan_reference`` (the
  dense-equivalent labeling of one image, torchvision's own loop);
- ``view``: images for Dataset diagnostics (one image with its labeled anchors, crops of boxes without a positive).
"""
