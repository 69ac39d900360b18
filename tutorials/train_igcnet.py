"""
Title: Training an IGC network with model.fit and tf.data
Author: keras-igc developers
Date created: 2026/11/23
Last modified: 2026/11/23
Description: Train IGC-L24M2 on offline digits with the paper's recipe; evaluate it.
Accelerator: None
"""

"""
## Introduction

`keras_igc.data` turns a dataset name into a `tf.data` pipeline (cached, shuffled,
augmented in parallel, batched, prefetched) and `keras_igc.training` trains a
registered network on it with the paper's recipe, through `model.fit`. This
tutorial uses scikit-learn's handwritten digits, which install with the package, so
it runs anywhere with no download; the same calls take `"cifar10"`, `"cifar100"`,
`"svhn_cropped"` or `"imagenet2012"` once TFDS has them (`data_dir=...`).
"""

"""
## Setup
"""

import os
import tempfile

from keras_igc import data, training

"""
## The input pipeline

Each batch holds normalised float32 images and int64 labels. The digits are 8x8
images resized to 32x32, one channel; 1,437 train and 360 test images.
"""

train_data = data.load("digits", "train", batch_size=64, seed=0)
images, labels = next(iter(train_data))
print("images", images.shape, images.dtype, "labels", labels.shape, labels.dtype)

"""
## The recipe

The paper trains with Nesterov SGD (momentum 0.9, weight decay 1e-4 added to the
gradient inside the momentum, as MXNet and PyTorch do:
`keras_igc.optimizers.CoupledSGD`) and a learning rate of 0.1 divided by 10 after
1/2, 3/4 and 7/8 of the epochs. Here we keep the recipe but train for a few epochs
only; `steps_per_epoch` shortens them further so the tutorial runs in about a minute.
"""

recipe = training.paper_recipe("digits", epochs=3, batch_size=64)
print(recipe)

"""
## Training

`training.train` builds the network for the dataset's image size and classes,
compiles it with the recipe, and calls `model.fit` with checkpoints every epoch,
`BackupAndRestore` (running the same call again after an interruption resumes at the
next epoch), TensorBoard logs, a CSV history and a plot of the curves.
"""

output = os.path.join(tempfile.mkdtemp(), "digits-igc")
model, history = training.train(
    "IGC-L24M2",
    "digits",
    output,
    depth=8,
    epochs=recipe.epochs,
    batch_size=recipe.batch_size,
    steps_per_epoch=10,
    seed=0,
    verbose=2,
)
print(sorted(os.listdir(output)))

"""
## Evaluation

The saved model is an ordinary `.keras` file; `training.evaluate` reloads it and
scores it on the evaluation split. (Three short epochs are far from converged: the
README's quick start trains longer.)
"""

print(training.evaluate(os.path.join(output, "model.keras"), "digits"))
