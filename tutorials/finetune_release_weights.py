"""
Title: Fine-tuning the IGC authors' ImageNet weights
Author: keras-igc developers
Date created: 2026/11/23
Last modified: 2026/11/23
Description: Load an authors' ImageNet checkpoint; train a new head on digits.
Accelerator: None
"""

"""
## Introduction

The IGC authors' release (github.com/hellozting/InterleavedGroupConvolutions,
folder `models/`) ships the ImageNet weights behind the paper's table as MXNet
checkpoints, e.g.
`IGC-L100M2_ImageNet/resnet_gcwf_noshare_imagenet_d18b100-0095.params`.
`keras_igc.applications` builds the same networks, op for op, and reads those files
with NumPy: no MXNet needed. Here we load one without its 1000-way classifier, freeze
it, and train a new head on scikit-learn's handwritten digits.

Set `IGC_RELEASE_WEIGHTS` to the path of a release checkpoint to use the real
weights. Without it the tutorial uses the small checkpoint the test suite ships: the
IGC-L100M2+Ident. graph, narrowed, with random weights (so the accuracy means
nothing, but every step runs).
"""

"""
## Setup
"""

import os
import pathlib

import keras
import tensorflow as tf

from keras_igc import applications, data, quick

here = pathlib.Path(__file__).resolve().parent
checkpoint = os.environ.get(
    "IGC_RELEASE_WEIGHTS",
    str(here.parent / "tests" / "fixtures" / "release" / "igc-l100m2-0000.params"),
)

"""
## The backbone

`from_release_weights` reads the widths, partitions and classes from the file and
builds the network it describes. With `include_top=False` every weight but the
classifier's loads; `pooling="avg"` ends the network with global average pooling.
The networks take normalised images: `applications.preprocess_input` applies the
release's per-channel statistics to 0-255 RGB values.
"""

SIZE = 64  # the digits are small; the networks take any size from 32 up
backbone = applications.from_release_weights(
    checkpoint, include_top=False, pooling="avg", input_shape=(SIZE, SIZE, 3)
)
backbone.trainable = False
print(
    backbone.name, f"{backbone.count_params():,} weights, output", backbone.output_shape
)

"""
## The data

`keras_igc.data` normalises digits with their own statistics; for an ImageNet
network we want 0-255 RGB instead, so we undo it, repeat the one channel three
times, resize, and apply the release's normalisation.
"""

spec = data.spec("digits")


def to_imagenet_input(images, labels):
    pixels = (images * spec.std[0] + spec.mean[0]) * 255.0
    rgb = tf.image.resize(tf.repeat(pixels, 3, axis=-1), (SIZE, SIZE))
    return applications.preprocess_input(rgb), labels


train_data = data.load("digits", "train", batch_size=64, seed=0).map(to_imagenet_input)
eval_data = data.load("digits", "eval", batch_size=64).map(to_imagenet_input)

"""
## A new head

The frozen backbone in inference mode (its BatchNorm statistics stay the release's),
then a new classifier.
"""

inputs = keras.Input((SIZE, SIZE, 3))
features = backbone(inputs, training=False)
outputs = keras.layers.Dense(10, activation="softmax", name="digits")(features)
model = keras.Model(inputs, outputs)
model.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
epochs = quick.epochs(3)  # KERAS_IGC_QUICK=1 (the tests) shortens it
model.fit(train_data, validation_data=eval_data, epochs=epochs, verbose=2)
print(model.evaluate(eval_data, verbose=0, return_dict=True))

"""
## Saving

The fine-tuned model saves like any Keras model and loads with `safe_mode=True`
once `keras_igc` is imported.
"""

model.save("digits_from_imagenet.keras")
reloaded = keras.saving.load_model("digits_from_imagenet.keras")
print("reloaded:", reloaded.count_params(), "weights")
