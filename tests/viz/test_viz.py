import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, assert_picture, icosphere, pixels, requires, skip_unless_rendering

from tg_funcattn import viz
from tg_funcattn.training.pictures import part_names

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


def test_part_legend_names_the_parts_present():
    legend = viz.part_legend([37, 36, 37, 36], {36: "Mug handle", 48: "Table leg"})
    assert [name for name, _ in legend] == ["Mug handle", "part 37"]  # only those present
    np.testing.assert_array_equal(np.stack([c for _, c in legend]), viz.label_colors([36, 37]))
    names = part_names("synthetic", 50)
    assert len(names) == 50 and names[36] == "Mug handle" and names[0] == "Airplane body"
    assert names[12] == "Chair part 12"  # a ShapeNet part the synthetic shapes do not name
    assert part_names("shapenet", 50) == names
    assert part_names("rna", 3) == {0: "class 0", 1: "class 1", 2: "class 2"}


def test_curves_are_against_whole_epochs_with_train_and_validation(tmp_path):
    """One epoch is a marked point on an axis from 0 to 1 epoch with integer
    ticks (not a dot on a +-0.04 axis); train and validation share a panel."""
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train_loss,val_loss,val_accuracy,train_accuracy,test_loss\n"
                   "0,3,,1.5,0.4,,\n0,3,2.0,,,0.3,\n1,3,,,,,1.4\n")
    fig = viz.training_curves_figure(csv)
    try:
        loss, accuracy = (ax for ax in fig.axes if ax.get_title())
        assert (loss.get_title(), accuracy.get_title()) == ("loss", "accuracy")
        for ax in (loss, accuracy):
            assert [line.get_label() for line in ax.get_lines()] == ["train", "validation"]
            assert [line.get_marker() for line in ax.get_lines()] == ["o", "o"]
            low, high = ax.get_xlim()
            assert low <= 0 and 1 <= high < 1.5
            ticks = [t for t in ax.get_xticks() if low <= t <= high]
            assert ticks == [0, 1]
        assert list(loss.get_lines()[0].get_xdata()) == [1]  # after one epoch of training
        assert list(loss.get_lines()[1].get_ydata()) == [1.5]
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
    # a resume logs to a second file, its columns in another order: read as one run
    resumed = tmp_path / "version_1.csv"
    resumed.write_text("epoch,step,val_loss,train_loss\n1,7,1.2,\n1,7,,1.0\n")
    fig = viz.training_curves_figure([csv, resumed])
    try:
        loss = fig.axes[0]
        assert [list(line.get_xdata()) for line in loss.get_lines()] == [[1, 2], [1, 2]]
        assert list(loss.get_lines()[0].get_ydata()) == [2.0, 1.0]
        assert loss.get_xlim()[1] >= 2
    finally:
        plt.close(fig)


def test_functional_maps_have_a_symmetric_colour_scale():
    import matplotlib.pyplot as plt

    fmaps = np.random.default_rng(0).normal(size=(6, 8, 8))
    fmaps[2, 0, 0] = -5.0  # the largest magnitude, negative
    fig = viz.functional_maps_figure(fmaps, title="C")
    try:
        heads = [ax for ax in fig.axes if ax.get_title().startswith("head")]
        assert len(heads) == 6 and all(ax.images[0].get_clim() == (-5.0, 5.0) for ax in heads)
        bars = [ax for ax in fig.axes if ax.get_ylabel() == "C[i, j]"]
        assert len(bars) == 1 and bars[0].get_ylim() == (-5.0, 5.0)
        assert heads[0].images[0].get_cmap().name == "RdBu_r"
    finally:
        plt.close(fig)


def test_segmentation_shows_views_errors_and_named_parts(tmp_path):
    """Three views of prediction, ground truth and errors: the views differ,
    the errors view has dark points only where the prediction is wrong, and
    the legend names the parts present."""
    import matplotlib.pyplot as plt

    skip_unless_rendering()
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(800, 3)) * [1.0, 0.5, 0.3]
    target = np.where(pos[:, 0] > 0, 36, 37)
    names = {36: "Mug handle", 37: "Mug body"}
    for pred, dark in ((target, False), (np.where(pos[:, 1] > 0.3, 36, target), True)):
        fig = viz.segmentation_figure(pos, pred, target, title="mug", part_names=names)
        try:
            panels = np.array(fig.axes[:9]).reshape(3, 3)
            assert [ax.get_title().split(" (")[0] for ax in panels[0]] == [
                "prediction", "ground truth", "errors"]
            assert [ax.get_ylabel() for ax in panels[:, 0]] == ["view 0°", "view 120°", "view 240°"]
            views = [np.asarray(ax.images[0].get_array(), float) for ax in panels[:, 1]]
            assert np.abs(views[0] - views[1]).mean() > 1 and np.abs(views[1] - views[2]).mean() > 1
            errors = np.asarray(panels[0, 2].images[0].get_array(), float)[..., :3]
            assert ((errors.max(-1) < 40).sum() > 50) == dark
            legend = [t.get_text() for t in fig.legends[0].get_texts()]
            assert legend == ["Mug handle", "Mug body", "wrong point (errors)"]
        finally:
            plt.close(fig)
    image = assert_picture(viz.render_segmentation(pos, target, target, tmp_path / "seg.png"),
                           min_bytes=5000)
    assert image.shape[1] > 1.2 * image.shape[0]  # three columns and the legend beside them


@requires("trimesh")
def test_offscreen_rendering_of_fields_on_a_mesh(tmp_path):
    skip_unless_rendering()
    vertices, faces = icosphere(2)
    fields = vertices[:, :2] * [1.0, 10.0]
    assert_picture(viz.render_fields(vertices, fields, tmp_path / "f.png", face=faces), min_bytes=5000)
    import matplotlib.pyplot as plt

    fig = viz.fields_figure(vertices, fields, face=faces, titles=["x", "10 y"])
    try:  # a colour bar per panel, spanning that field's range
        bars = [ax for ax in fig.axes if not ax.get_title()]
        assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["x", "10 y"]
        np.testing.assert_allclose([ax.get_xlim() for ax in bars],
                                   [(fields[:, j].min(), fields[:, j].max()) for j in range(2)])
    finally:
        plt.close(fig)


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


def test_the_renderer_prints_nothing_on_stdout():
    """Filament announces its engine on the process's stdout (7 lines from native
    code), which broke ``tg-funcattn ... | jq``: it goes to stderr."""
    skip_unless_rendering()
    code = "from tg_funcattn.viz import _renderer; _renderer(); print('{}')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "{}\n"
