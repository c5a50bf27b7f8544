"""A sweep's comparison figure: one panel per measure (dev accuracy, training loss, and the
weight norm where asked), one line per configuration in the same colour in every panel; with
several seeds, each line is their mean, over a band from their min to their max."""
import warnings
from pathlib import Path

import numpy as np

from reporting.plan import COURSE_SEED
from runkit import figures


def _mean_and_band(seeded):
    """The mean per epoch of curves of maybe unequal lengths, and their (min, max) per epoch."""
    table = np.full((len(seeded), max(map(len, seeded))), np.nan)
    for i, values in enumerate(seeded):
        table[i, :len(values)] = [np.nan if v is None else v for v in values]
    with warnings.catch_warnings():  # an epoch where every seed diverged
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(table, axis=0)
        band = np.nanmin(table, axis=0), np.nanmax(table, axis=0)
    return [None if np.isnan(v) else float(v) for v in mean], band


def sweep_figure(sweep, records, seeds=(COURSE_SEED,)):
    """The sweep's figure (a matplotlib Figure; None if no run has a record)."""
    runs = [r for r in sweep.runs if any(r.with_seed(s) in records for s in seeds)]
    if not runs:
        return None
    measures = [("valid_acc", "Dev accuracy"), ("train_loss", "Training loss")]
    if sweep.weight_norm:
        measures.append(("weight_norm", "Weight norm ||W||_F"))
    panels, bands = [], []
    for key, ylabel in measures:
        curves, band = {}, {}
        for run in runs:
            seeded = [records[r][key] for s in seeds
                      if (r := run.with_seed(s)) in records and records[r].get(key)]
            if len(seeded) == 1 and len(seeds) == 1:
                curves[run.description] = seeded[0]
            elif seeded:
                curves[run.description], band[run.description] = _mean_and_band(seeded)
        if curves:
            panels.append((ylabel, curves))
            bands.append(band)
    # by position in the sweep, not in the panel: a panel may lack a run (the perceptron has
    # no loss), which would shift the colours of the next ones
    colours = {run.description: f"C{i % 10}" for i, run in enumerate(sweep.runs)}
    n_epochs = max(len(records[r]["epochs"]) for run in runs for s in seeds
                   if (r := run.with_seed(s)) in records)
    title = sweep.title
    if len(seeds) > 1:
        title += f"\n(mean of {len(seeds)} seeds; band: their min to max)"
    fig = figures.panels_figure(range(1, n_epochs + 1), panels, title=title, colors=colours)
    for ax, band in zip(fig.axes, bands):
        for line in ax.get_lines():
            if line.get_label() in band:
                low, high = band[line.get_label()]
                ax.fill_between(line.get_xdata(), low, high, where=~np.isnan(low),
                                color=line.get_color(), alpha=0.2, linewidth=0)
    return fig


def comparison_figure(sweep, records, figures_dir, seeds=(COURSE_SEED,)):
    """Save `sweep_figure` as figures_dir/KEY.pdf and .png, both or neither; returns the paths."""
    fig = sweep_figure(sweep, records, seeds)
    return [] if fig is None else figures.save_figure(fig, Path(figures_dir) / sweep.key)
