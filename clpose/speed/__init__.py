"""Speed: timing primitives, the model benchmark of `clpose bench`, and the training-speed probe of `clpose demo`."""
