"""
Title: How many partitions? Sweeping L and M with KerasTuner
Author: keras-igc developers
Date created: 2026/11/23
Last modified: 2026/11/23
Description: A fixed-budget sweep of IGC networks on offline digits, with its report.
Accelerator: None
"""

"""
## Introduction

An IGC block splits its G channels into L primary partitions of M channels. For a
fixed number of weights, the split decides how wide the network can be: the paper
found M = 2 widest and most accurate on CIFAR. `keras_igc.tuning` turns that
question into one KerasTuner sweep, whose report a paper's ablation table can be
made from. This tutorial runs a short one on scikit-learn's digits, which need no
download.
"""

"""
## Setup
"""

import os
import tempfile

from keras_igc import applications, tuning

"""
## The candidates

In budget mode, each M gets the widest L whose network has no more convolution
weights than a reference, here RegConv-W16 at depth 8. An M whose narrowest network
(L = 1) is already too big is left out.
"""

budget = tuning.reference_budget("RegConv-W16", depth=8, input_shape=(32, 32, 1))
pairs = tuning.fixed_budget_pairs(budget, depth=8, input_channels=1)
print(f"budget: {budget:,} convolution weights")
for L, M in pairs:
    params = applications.cifar.igc_conv_weights(L, M, depth=8, input_channels=1)
    print(f"M={M:2d}: L={L:2d}, width {L * M:3d}, {params:,} weights")

"""
The widths peak at M = 2, as in the paper's per-layer table for this budget. The
fixed-width mode instead keeps G and tries every `(L, M)` with `L * M = G`:
"""

print(tuning.fixed_width_pairs(48))

"""
## The sweep

`sweep` trains each candidate with the paper's recipe, shortened to `epochs`, on the
`tf.data` pipeline of the training module, and keeps the best validation accuracy.
The tuner is KerasTuner's GridSearch by default ("random", "bayesian" and
"hyperband" also work). Each trial here runs one short epoch on two of the
candidates so that the tutorial takes a minute. That is far too short to rank them (the
BatchNorm moving statistics have barely moved from their initial values); the note on
the tuning issue has a full sweep.
"""

directory = os.path.join(tempfile.mkdtemp(), "sweep")
rows = tuning.sweep(
    "budget",
    "digits",
    directory,
    secondary_partitions=(2, 8),
    depth=8,
    epochs=1,
    steps_per_epoch=5,
    seed=0,
    verbose=0,
)

"""
## The report

One row per trial: the partitions, the stage widths, weights and MACs, the best
validation accuracy, epochs and wall time. The same table is in `report.md` and
`report.csv`; `accuracy_vs_m.png` and `accuracy_vs_params.png` plot it.
"""

print(tuning.format_report(rows))
print(sorted(os.listdir(directory)))

"""
Running the same call again with the same directory resumes the sweep: finished
trials are kept, an interrupted one runs again (`overwrite=True` starts over). From a
shell: `keras-igc tune --mode budget --dataset digits --epochs 10`.
"""
