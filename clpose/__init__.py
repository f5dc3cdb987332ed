"""clpose: 2D human pose estimation with composite localization.

A sparse, low-resolution heatmap finds each keypoint's cell; two short-distance offset maps give its exact
position. The package is one core (codecs, models, data pipeline, metrics) behind the `clpose` command.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from clpose.errors import ClposeError

try:
    __version__ = version("clpose")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["ClposeError", "__version__"]
