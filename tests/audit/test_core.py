import numpy as np

from bmbench.audit.core import clusters_line


def test_clusters_line_says_none_instead_of_zero_clusters_of_largest_one():
    assert clusters_line(np.ones(5, int)) == "clusters: none (no image has a near-duplicate)"
    assert clusters_line(np.array([1, 3, 2, 1])) == "clusters: 5 images in 2 cluster(s) of two or more (largest 3)"

