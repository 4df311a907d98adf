"""The one distance formula that scoring, its further time scales and training's in-driver KMeans
share. Part of the scoring core: plain numpy."""

from __future__ import annotations

import numpy as np


def squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each point's squared Euclidean distance to each centroid (rows x centroids): the one
    formula that scoring and training's in-driver KMeans share.

    Summed feature by feature, in order, as the Spark SQL expressions sum them (so the two agree
    bit for bit on the same standardised values), and without the points x centroids x features
    temporary of one broadcast.
    """
    total = None
    for feature in range(points.shape[1]):
        difference = points[:, feature, None] - centroids[None, :, feature]
        square = difference * difference
        if total is None:
            total = square
        else:
            total += square
    return total if total is not None else np.zeros((len(points), len(centroids)))
