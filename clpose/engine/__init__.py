"""The engine: plain functions for training (train.py), prediction and scoring (evaluate.py), checkpoints
(checkpoint.py) and torchrun's environment (distributed.py)."""
