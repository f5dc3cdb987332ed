"""Metrics: pure functions on numpy arrays (PCK, PCKh, COCO OKS AP through pycocotools)."""
