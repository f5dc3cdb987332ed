"""The engine: a trained model ready to run (posemodel.py: PoseModel, built from a recipe or a checkpoint), training
(train.py), prediction over a dataset (evaluate.py), the metric registry and its scorers (metrics.py, scoring.py),
checkpoint evaluation (eval_checkpoint.py), checkpoints (checkpoint.py), torchrun's environment (distributed.py),
timing (timing.py), progress bars and training curves (progress.py, curves.py)."""
