"""
Title: Shipping an IGC network: SavedModel, LiteRT and ONNX
Author: keras-igc developers
Date created: 2026/11/23
Last modified: 2026/11/23
Description: Train briefly, fold BatchNorm, export to three formats, verify and time.
Accelerator: None
"""

"""
## Introduction

An exported IGC network has to run where keras_igc is not installed: TensorFlow
Serving, a phone, onnxruntime. `keras_igc.export` writes a SavedModel, a LiteRT
(`.tflite`) file and an ONNX file from one Keras model, after cloning it into a
form every runtime understands: no XLA-compiled grouped convolutions (the ONNX
converter turns those into a graph nothing can load), and every BatchNorm folded
into the convolution before it. `export.check` then runs each artifact in its own
runtime against the Keras model. ONNX needs `pip install "keras-igc[export]"`.
"""

"""
## Setup: a briefly trained network

A depth-8 IGC-L24M2 on the offline digits data, two short epochs: enough for the
BatchNorm statistics to be real ones, which is what folding uses.
"""

import os
import tempfile

from keras_igc import export, training

workdir = tempfile.mkdtemp()
model, _ = training.train(
    "IGC-L24M2",
    "digits",
    os.path.join(workdir, "run"),
    depth=8,
    epochs=2,
    batch_size=64,
    steps_per_epoch=5,
    seed=0,
    verbose=0,
)

"""
## Folding

`export.prepare` is the clone that gets exported, one per format. Each BatchNorm
scales the output channels of the block before it and adds a shift, so it folds into
that block's weights. Each IGC block takes the form the format's runtime measured
fastest: for ONNX Runtime, as here, the primary as ONNX's grouped `Conv` and the
permutation and secondary as one 1x1 convolution; `block_form="dense"` would make
every block its dense-equivalent convolution instead (more MACs, one kernel).
"""

folded, report = export.prepare(model, runtime="onnx")
print(report.summary())
print({block["layer"]: block["form"] for block in report.blocks})

"""
## Export

One call writes all three artifacts and `export_report.json`. An existing artifact
is an error unless `overwrite=True`; other files in the directory are left alone.
"""

result = export.export(model, os.path.join(workdir, "export"))
print("needed the select-TF fallback:", result.litert_select_ops or "nothing")

"""
## Verify and time

Each artifact runs in its own runtime (TensorFlow, the LiteRT interpreter,
onnxruntime) on the same random inputs as the Keras model. Latency is the median of
20 calls, with the ratio to Keras' `predict_on_batch` measured in the same run.
"""

rows = export.check(model, result.artifacts, batch_sizes=(1, 3))
print(export.format_check(rows))
assert max(row["max_abs_diff"] for row in rows) <= 1e-4

"""
The same from a shell:

```
keras-igc export runs/igc/model.keras --output exported --check
```
"""
