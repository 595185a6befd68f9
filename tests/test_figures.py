"""``rlhf-toy figures`` writes every registered figure and an index saying what each shows."""

from matplotlib.figure import Figure

from rlhf_toy.presentation.figures import FIGURES, write_figures


def test_every_figure_is_written_titled_labelled_and_indexed(tmp_path):
    written = write_figures(tmp_path, verbose=False)
    assert [spec.name for spec, *_ in written] == [spec.name for spec in FIGURES]
    index = (tmp_path / "index.md").read_text()
    for spec, png, _, fig in written:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10_000, f"{png.name} is (nearly) empty"
        assert f"`{png.name}`: {spec.caption}" in index
        assert isinstance(fig, Figure)
        axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.has_data()]
        assert axes, f"{spec.name} draws nothing"
        assert fig.get_suptitle() or all(ax.get_title() for ax in axes), f"{spec.name}: no title"
        for ax in axes:
            assert ax.get_xlabel() and ax.get_ylabel(), f"{spec.name}: unlabelled axes"

