"""Evaluation: the official metrics as pure functions on arrays, their registry, and the files they read and write."""
