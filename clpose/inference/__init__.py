"""Inference: the Predictor (images and boxes -> poses), video and image sources, smoothing and tracking,
the optional person detector, and ONNX / TorchScript export."""
