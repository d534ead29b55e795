import numpy as np


def test_the_written_out_hed_matrix_is_skimages_bit_for_bit():
    from skimage.color import hed_from_rgb

    from bmbench.features.regions import _hed_matrix

    assert _hed_matrix().dtype == np.float64
    assert np.array_equal(_hed_matrix(), np.asarray(hed_from_rgb, np.float64))
