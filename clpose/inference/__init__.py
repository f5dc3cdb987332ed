"""Inference: the Predictor (images and boxes -> poses, over clpose.engine.posemodel.PoseModel), image and video
sources and the `clpose infer` loop (run.py, video.py), smoothing and tracking (smoothing.py) and the optional
person detector (detector.py). Export to ONNX / TorchScript is clpose.export."""
