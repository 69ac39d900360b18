"""Every figure keras_igc draws, with `matplotlib.figure.Figure`.

A `Figure` needs no pyplot and no backend switch, so drawing here never
changes the backend of a user's notebook or script.
"""

import csv
import os
import re

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def plot_history(csv_path, png_path=None, title=None, drops=()):
    """Loss and accuracy curves from a run's `history.csv`, as a PNG beside it.

    Loss on a log axis (the first epochs' loss would flatten the rest), whole
    epochs on the x axis, the learning-rate drops (epochs after which the
    rate falls) as dashed lines.
    """
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_path!r} holds no epochs to plot.")
    epochs = [int(row["epoch"]) for row in rows]
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, label in (("", "train"), ("val_", "validation")):
            if prefix + metric in rows[0]:
                values = [float(row[prefix + metric]) for row in rows]
                axis.plot(epochs, values, marker="." if len(rows) < 30 else None,
                          label=label)  # fmt: skip
        for drop in drops:
            if epochs[0] <= drop <= epochs[-1]:
                axis.axvline(drop, color="grey", linestyle="--", linewidth=0.8)
        if metric == "loss":
            axis.set_yscale("log")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric + (" (log scale)" if metric == "loss" else ""))
        axis.legend()
    if title:
        figure.suptitle(title + (" (dashed: learning-rate drops)" if drops else ""))
    png_path = png_path or os.path.join(os.path.dirname(csv_path), "curves.png")
    figure.tight_layout()
    figure.savefig(png_path, dpi=100, format="png")
    return png_path


def plot_topology(masks, path, title=None):
    """Draw which input channels each head reads, averaged over samples.

    Args:
        masks: `{layer name: (batch, heads, C_in) masks}` from `head_masks`.
        path: PNG to write.
    """
    names = list(masks)
    figure = Figure(figsize=(8, 1.2 + 0.9 * len(names)))
    axes = figure.subplots(len(names), 1, squeeze=False)
    for axis, name in zip(axes[:, 0], names, strict=True):
        usage = np.asarray(masks[name]).mean(axis=0)  # (heads, C_in)
        axis.imshow(usage, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        axis.set_ylabel(re.sub(r"_conv$", "", name), rotation=0, ha="right")
        axis.set_yticks(range(usage.shape[0]))
    axes[-1, 0].set_xlabel("input channel (colour: fraction of samples that read it)")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def plot_sweep(rows, directory):
    """Best validation accuracy against M and against parameters, from
    `tuning.report` rows, as two PNGs in `directory`."""
    done = [r for r in rows if r["best_val_accuracy"] is not None]
    # Accuracy against M is a curve (one network per M); against parameters,
    # scattered points.
    for x_key, label, filename, style in (
        ("M", "secondary partitions M", "accuracy_vs_m.png", "o-"),
        ("params", "parameters", "accuracy_vs_params.png", "o"),
    ):
        figure = Figure(figsize=(5, 4))
        axis = figure.subplots()
        points = sorted(
            (r[x_key], r["best_val_accuracy"], f"L{r['L']}M{r['M']}")
            for r in done
            if r[x_key] is not None
        )
        if points:
            xs, ys, names = zip(*points, strict=True)
            axis.plot(xs, ys, style)
            for x, y, name in points:
                axis.annotate(name, (x, y), fontsize=7, xytext=(3, 3),
                              textcoords="offset points")  # fmt: skip
            if min(xs) > 0:
                axis.set_xscale("log", base=2 if x_key == "M" else 10)
        axis.set_xlabel(label)
        axis.set_ylabel("best validation accuracy")
        axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(os.path.join(directory, filename), dpi=100)
