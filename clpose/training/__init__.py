"""Training: the loop, the run folder and its rules, and what a run reports (curves, progress, health)."""
