import subprocess

import numpy as np
import pytest
from helpers import assert_picture, icosphere, pixels, requires, skip_unless_rendering

from tg_funcattn import viz

pytestmark = requires("matplotlib")


def test_label_colours_are_fixed_and_distinct():
    labels = np.arange(260)
    colours = viz.label_colors(labels)
    assert colours.shape == (260, 3) and np.all((colours >= 0) & (colours <= 1))
    np.testing.assert_array_equal(colours, viz.label_colors(labels))
    assert len({tuple(np.round(c, 3)) for c in colours[:50]}) == 50  # the 50 ShapeNet parts differ


def test_functional_map_and_curve_plots(tmp_path):
    """The pictures draw their data: three maps side by side, and the maps'
    signs and the logged values show (a blank or data-free figure would be
    the same for other data; it would pass a file-size check)."""
    fmaps = np.random.default_rng(0).normal(size=(3, 8, 8))
    maps = assert_picture(viz.plot_functional_maps(fmaps, tmp_path / "c.png"))
    assert maps.shape[1] > 2 * maps.shape[0]  # three panels in a row
    flipped = pixels(viz.plot_functional_maps(-fmaps, tmp_path / "flipped.png"))
    assert flipped.shape == maps.shape and np.abs(flipped - maps).mean() > 0.01
    csv = tmp_path / "metrics.csv"
    rows = ("epoch,step,train_loss,val_loss,val_accuracy,test_accuracy\n"
            "0,3,{},,,\n0,3,,1.5,0.4,\n1,7,1.0,,,\n1,7,,1.2,0.6,\n1,7,,,,0.7\n")
    csv.write_text(rows.format("2.0"))
    curves = assert_picture(viz.plot_training_curves(csv, tmp_path / "curves.png"))
    csv.write_text(rows.format("1.1"))
    other = pixels(viz.plot_training_curves(csv, tmp_path / "other.png"))
    assert other.shape == curves.shape and np.abs(other - curves).max() > 0.5
    csv.write_text("epoch,step,test_accuracy\n1,7,0.7\n")
    with pytest.raises(ValueError, match="holds no logged training metrics"):
        viz.plot_training_curves(csv, tmp_path / "none.png")


@requires("trimesh")
def test_offscreen_rendering_writes_pngs(tmp_path):
    skip_unless_rendering()
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(500, 3))
    target = (pos[:, 0] > 0).astype(int)
    path = viz.render_segmentation(pos, 1 - target, target, tmp_path / "seg.png", title="test")
    image = assert_picture(path, min_bytes=5000)
    assert image.shape[1] > 2 * image.shape[0] // 2
    vertices, faces = icosphere(2)
    fields = vertices[:, :2]
    assert_picture(viz.render_fields(vertices, fields, tmp_path / "f.png", face=faces), min_bytes=5000)


def test_rendering_probe_reports_a_reason(monkeypatch):
    ok, reason = viz.rendering_available()
    assert isinstance(ok, bool) and (ok or "apt-get install" in reason or "open3d" in reason)
    # a probe that fails (here, as on a machine without EGL) or hangs gives the reason
    # and the fix; probed afresh, past the cache
    failed = subprocess.CompletedProcess([], 1, "", "Traceback ...\nOSError: libEGL.so.1: cannot open "
                                                    "shared object file: No such file or directory\n")
    monkeypatch.setattr(viz.subprocess, "run", lambda *args, **kwargs: failed)
    ok, reason = viz.rendering_available.__wrapped__()
    assert not ok and "OSError: libEGL.so.1: cannot open shared object file" in reason
    assert "pip install 'tg-funcattn[viz]'" in reason and "apt-get install libgl1 libegl1" in reason

    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout"))
    monkeypatch.setattr(viz.subprocess, "run", hang)
    assert viz.rendering_available.__wrapped__() == (
        False, "open3d's off-screen renderer did not start within 120 s")
