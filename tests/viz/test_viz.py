import numpy as np
import pytest
from helpers import icosphere, requires, skip_unless_rendering

from tg_funcattn import viz

pytestmark = requires("matplotlib")


def test_label_colours_are_fixed_and_distinct():
    labels = np.arange(260)
    colours = viz.label_colors(labels)
    assert colours.shape == (260, 3) and np.all((colours >= 0) & (colours <= 1))
    np.testing.assert_array_equal(colours, viz.label_colors(labels))
    assert len({tuple(np.round(c, 3)) for c in colours[:50]}) == 50  # the 50 ShapeNet parts differ


def test_functional_map_and_curve_plots(tmp_path):
    path = viz.plot_functional_maps(np.random.default_rng(0).normal(size=(3, 8, 8)), tmp_path / "c.png")
    assert path.stat().st_size > 1000
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train_loss,val_loss,val_accuracy,test_accuracy\n"
                   "0,3,2.0,,,\n0,3,,1.5,0.4,\n1,7,1.0,,,\n1,7,,1.2,0.6,\n1,7,,,,0.7\n")
    assert viz.plot_training_curves(csv, tmp_path / "curves.png").stat().st_size > 1000
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
    assert path.stat().st_size > 5000
    from matplotlib.image import imread

    image = imread(path)
    assert image.shape[1] > 2 * image.shape[0] // 2 and image[..., :3].std() > 0.05  # not blank
    vertices, faces = icosphere(2)
    fields = vertices[:, :2]
    assert viz.render_fields(vertices, fields, tmp_path / "f.png", face=faces).stat().st_size > 5000


def test_rendering_probe_reports_a_reason():
    ok, reason = viz.rendering_available()
    assert isinstance(ok, bool) and (ok or "apt-get install" in reason or "open3d" in reason)
