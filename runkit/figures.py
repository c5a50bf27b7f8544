"""Figures: curves per epoch as side-by-side panels, saved as PDF and PNG, headless and
atomically (both files or neither)."""
import contextlib
from pathlib import Path

import numpy as np

from runkit.files import os_error_in, staged_files


def plot_curves(stem, epochs, curves, ylabel, title=None, xlabel="Epoch", stage=None):
    """Plot one line per entry of `curves` ({label: values per epoch}) against `epochs`.

    Saves `stem`.pdf and `stem`.png (headless, atomically) and returns both paths.
    """
    return plot_panels(stem, epochs, [(ylabel, curves)], title=title, xlabel=xlabel, stage=stage)


def panels_figure(epochs, panels, title=None, xlabel="Epoch", colors=None):
    """A matplotlib Figure of side-by-side plots, one per (ylabel, {label: values per epoch})
    of `panels`. Values may be None (a diverged epoch) and curves may be shorter than `epochs`;
    `colors` ({label: colour}) keeps a label in one colour across panels that lack some labels.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = list(epochs)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (ylabel, curves) in zip(axes[0], panels):
        for label, values in curves.items():
            values = np.asarray([np.nan if v is None else v for v in values], dtype=float)
            ax.plot(epochs[:len(values)], values, marker="o", markersize=3, label=label,
                    color=(colors or {}).get(label))
        if epochs:
            # whole epochs only, even for one: a lone point otherwise spans a few hundredths,
            # and the integer locator needs min_n_ticks=1 to place a single tick
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_panels(stem, epochs, panels, title=None, xlabel="Epoch", stage=None):
    """`panels_figure`, saved by `save_figure`; returns both paths."""
    return save_figure(panels_figure(epochs, panels, title=title, xlabel=xlabel), stem, stage)


def save_figure(fig, stem, stage=None):
    """Save `fig` as `stem`.pdf and `stem`.png and close it; returns both paths. Both files or
    neither, into `stage(path)` if given (see `staged_files`), else staged here. A failed write
    raises its OSError (not what the writer turned it into)."""
    import matplotlib.pyplot as plt

    paths = [Path(f"{stem}{suffix}") for suffix in (".pdf", ".png")]
    try:
        with contextlib.ExitStack() as stack:
            if stage is None:
                paths[0].parent.mkdir(parents=True, exist_ok=True)
                stage = stack.enter_context(staged_files())
            for path in paths:
                try:
                    fig.savefig(stage(path), format=path.suffix[1:], dpi=120)
                except Exception as err:
                    cause = os_error_in(err)
                    if cause is None or cause is err:
                        raise
                    raise cause from None
    finally:
        plt.close(fig)
    return paths

