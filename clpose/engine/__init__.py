"""Running a trained network: the PoseModel (built from a recipe or a checkpoint), checkpoints, prediction over a
dataset, checkpoint evaluation, CUDA graphs and torchrun's environment."""
