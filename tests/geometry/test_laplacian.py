"""Degenerate point clouds: a clear error naming 'pos',
and nothing printed by the native triangulation."""
import logging

import numpy as np
import pytest
from helpers import requires

from tg_funcattn.geometry import laplacian, mesh_eigenbasis

pytestmark = requires("potpourri3d", "robust_laplacian")

LINE = np.stack([np.linspace(0.0, 1.0, 50), np.zeros(50), np.zeros(50)], 1)
SAME = np.ones((50, 3))


@pytest.mark.parametrize("cloud, shape", [(LINE, "lie on one line"),
                                          (SAME, "all coincide")])
def test_cloud_spanning_no_surface_names_pos_and_what_is_needed(cloud, shape):
    with pytest.raises(ValueError, match=rf"'pos': the 50 points {shape} \(their second principal "
                                         r"extent is 0 of the first, at most the tolerance 1e-06\); "
                                         r"the point-cloud Laplacian needs points spread over a 2-D "
                                         "surface"):
        mesh_eigenbasis(cloud, None, 4)


def test_native_chatter_goes_to_the_log_not_to_the_console(capfd, caplog):
    """geometry-central prints a line per degenerate neighbourhood: 41 here,
    a point on a sphere repeated 40 times."""
    sphere = np.random.default_rng(0).standard_normal((40, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    with caplog.at_level(logging.DEBUG, logger="tg_funcattn._native"):
        laplacian(np.concatenate([sphere, np.repeat(sphere[:1], 40, 0)]))
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert "'skipping degenerate neighborhood' (x41)" in caplog.text
