"""Datasets: the readers (COCO, YOLO, Pascal VOC) into one dataset type, one image's boxes from any source, the
converter, and the dataset scan.

- ``coco``: the reader (``load_coco``, ``CocoDataset``, ``parse_json_lean``); its record checks in
  ``coco_records`` (images, categories), ``coco_annotations`` and ``coco_problems`` (the problems table);
  ``coco_columns`` (msgspec typed records straight into numpy columns), ``coco_stream`` (files of 1 GB or more, in
  blocks), ``coco_json`` (bytes, gzip, lean parsing for the dict path);
- ``formats``: ``detect_format`` and ``load_dataset`` (any format, from a file or a folder); ``yolo`` (data.yaml or
  images/ + labels/, lines parsed by ``yolo_labels``), ``voc`` (Annotations/*.xml, safe XML), both through
  ``box_records`` (the COCO box checks on pixel boxes) and ``image_headers`` (sizes without decoding pixels);
  ``convert`` (writers: COCO JSON, YOLO folder, VOC folder);
- ``image_boxes``: ground-truth boxes of one image for the Anchor lab (COCO JSON, YOLO .txt, table rows);
- ``scan``: the driver (``scan_dataset``) over ``scan_config``, ``scan_result``; the fast exact path
  ``scan_cpu`` (the compiled ``scan_kernel``) with ``scan_geometry``; ``scan_torch`` (CUDA); ``scan_reference`` (the
  dense-equivalent labeling of one image, torchvision's own loop);
- ``view``: images for Dataset diagnostics (one image with its labeled anchors, crops of boxes without a positive).
"""
