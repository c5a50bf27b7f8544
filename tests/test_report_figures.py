"""The sweeps' figures, from records alone: a configuration keeps its colour across panels,
whole epochs on the axis, the weight-norm panel, and with several seeds each configuration's
mean over a band from the seeds' min to their max."""
import numpy as np
import pytest

from reporting.figures import comparison_figure, sweep_figure
from reporting.plan import Sweep, q1, q2
from conftest import report_record

Q1 = Sweep("q1", "Q1: numpy models", [q1("perceptron"), q1("logistic_regression"), q1("mlp")],
           pick_best=False)


def q1_records(epochs):
    made = {run: report_record(run.model, epochs=epochs) for run in Q1.runs}
    made[q1("perceptron")]["train_loss"] = None  # the perceptron has no loss
    return made


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_run_keeps_its_colour_across_panels_and_epochs_are_whole(epochs):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    fig = sweep_figure(Q1, q1_records(epochs))
    try:
        colours, labels = {}, []
        for ax in fig.axes:
            labels.append([line.get_label() for line in ax.get_lines()])
            for line in ax.get_lines():
                colours.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
            low, high = ax.get_xlim()
            assert [t for t in ax.get_xticks() if low <= t <= high] == list(range(1, epochs + 1))
        assert labels == [["perceptron", "logistic_regression", "mlp"],
                          ["logistic_regression", "mlp"]]
        assert all(len(c) == 1 for c in colours.values()), colours
        assert len(set().union(*colours.values())) == 3
    finally:
        plt.close(fig)


def test_a_sweep_can_plot_the_weight_norm():
    import matplotlib.pyplot as plt
    sweep = Sweep("x-l2", "L2", [q1("logistic_regression")], weight_norm=True)
    made = report_record("logistic_regression", weight_norm=[3.0, 2.0])
    fig = sweep_figure(sweep, {sweep.runs[0]: made})
    try:
        panel = fig.axes[-1]
        assert panel.get_ylabel() == "Weight norm ||W||_F"
        [line] = panel.get_lines()
        assert list(line.get_ydata()) == [3.0, 2.0]
    finally:
        plt.close(fig)


def test_seeded_figures_draw_each_configuration_s_mean_over_a_min_max_band():
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    seeds = [42, 1, 2]
    sweep = Sweep("s", "S", [q2("mlp"), q2("mlp", layers=2)])
    rng = np.random.RandomState(0)
    records = {}
    for run in sweep.runs:
        for seed in seeds:
            made = report_record("mlp", seed, epochs=3)
            made["valid_acc"] = list(rng.uniform(0.5, 0.9, 3))
            made["train_loss"] = list(rng.uniform(0.1, 1.0, 3))
            records[run.with_seed(seed)] = made
    fig = sweep_figure(sweep, records, seeds=seeds)
    try:
        assert "3 seeds" in fig._suptitle.get_text()
        for ax, key in zip(fig.axes, ("valid_acc", "train_loss")):
            lines, bands = ax.get_lines(), ax.collections
            assert [line.get_label() for line in lines] == [r.description for r in sweep.runs]
            assert len(bands) == len(lines)
            for line, band, run in zip(lines, bands, sweep.runs):
                curves = np.array([records[run.with_seed(s)][key] for s in seeds])
                assert np.allclose(line.get_ydata(), curves.mean(axis=0), rtol=0, atol=1e-12)
                assert np.allclose(band.get_facecolor()[0][:3], to_rgb(line.get_color()))
                xy = np.concatenate([path.vertices for path in band.get_paths()])
                for epoch, low, high in zip(line.get_xdata(), curves.min(axis=0),
                                            curves.max(axis=0)):
                    ys = xy[np.isclose(xy[:, 0], epoch), 1]
                    assert np.isclose(ys.min(), low) and np.isclose(ys.max(), high)
    finally:
        plt.close(fig)


def test_a_sweep_without_records_has_no_figure(tmp_path):
    assert sweep_figure(Q1, {}) is None
    assert comparison_figure(Q1, {}, tmp_path) == []
    paths = comparison_figure(Q1, q1_records(2), tmp_path / "figures")
    assert [p.name for p in paths] == ["q1.pdf", "q1.png"] and all(p.stat().st_size for p in paths)
