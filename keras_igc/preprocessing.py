"""What a model's input expects, recorded beside the model.

A model classifies a photo correctly only when the photo is prepared as its
training images were: the same size and channels, the same view (the whole
image resized, or ImageNet's centre crop), the same statistics. `train`
records this as `preprocessing.json` in its run folder, `export` copies it
beside the exported files, and `keras-igc predict` reads it beside whatever
model file it is given (`.keras`, `.tflite`, `.onnx`).

Example:

>>> from keras_igc import preprocessing
>>> record = preprocessing.for_dataset("digits")
>>> record.image_size, record.channels, record.view, record.class_names[:3]
((32, 32), 1, 'resize', ['0', '1', '2'])
"""

import dataclasses
import json
import os

import numpy as np

from keras_igc import statistics

RECORD_FILE = "preprocessing.json"
VIEWS = ("resize", "centre_crop")
# ImageNet's evaluation view: the short side to 256, the centre crop.
SHORT_SIDE = 256


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes a model's input.

    Attributes:
        image_size: `(height, width)` of the model's input.
        channels: 1 (grayscale) or 3 (RGB); an image with the other count is
            converted.
        mean, std: per-channel statistics on a 0-1 scale: the input is
            `(pixel / 255 - mean) / std`.
        view: `"resize"` (the whole image resized to `image_size`, as the
            CIFAR-sized datasets and digits are) or `"centre_crop"` (short
            side `SHORT_SIDE`, then the centre crop: ImageNet's evaluation).
        class_names: the label of each class index, or None.
        source: what the record was made from, e.g. `"dataset digits"`.
    """

    image_size: tuple
    channels: int
    mean: tuple
    std: tuple
    view: str = "resize"
    class_names: list | None = None
    source: str = ""

    def __post_init__(self):
        if self.view not in VIEWS:
            raise ValueError(
                f"`view` must be one of {VIEWS}. Received: view={self.view!r}."
            )
        if self.channels not in (1, 3) or len(self.mean) != self.channels:
            raise ValueError(
                f"A preprocessing record needs 1 or 3 channels with one mean and "
                f"std each. Received: channels={self.channels!r}, "
                f"mean={self.mean!r}."
            )

    @property
    def dataset(self):
        """The `keras_igc.data` dataset the record was made from
        (`for_dataset`), or None."""
        from keras_igc import data

        name = self.source.removeprefix("dataset ")
        known = self.source.startswith("dataset ") and name in data.DATASETS
        return name if known else None

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text, path="the record"):
        try:
            fields = json.loads(text)
            fields["image_size"] = tuple(fields["image_size"])
            fields["mean"], fields["std"] = tuple(fields["mean"]), tuple(fields["std"])
            return cls(**fields)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is not a preprocessing record ({type(error).__name__}: "
                f"{error}). Remove it, or write one with "
                f"keras_igc.preprocessing.Preprocessing(...).save(folder)."
            ) from None

    def save(self, folder):
        """Write the record as `folder/preprocessing.json` (atomically)."""
        from keras_igc import runs

        path = os.path.join(folder, RECORD_FILE)
        runs.write_text(path, self.to_json())
        return path

    def load_image(self, path):
        """An image file as the model's input: float32, `(*image_size,
        channels)`, normalised."""
        import tensorflow as tf

        from keras_igc import data

        path = os.fspath(path)  # a str or a pathlib.Path
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No image file at {path!r}.")
        try:
            image = tf.io.decode_image(
                tf.io.read_file(path), channels=3, expand_animations=False
            )
        except tf.errors.InvalidArgumentError:
            raise ValueError(
                f"{path!r} is not an image TensorFlow can read (JPEG, PNG, BMP, GIF)."
            ) from None
        image = tf.cast(image, tf.float32)
        if self.channels == 1:
            image = tf.image.rgb_to_grayscale(image)
        if self.view == "centre_crop" and self.image_size[0] == self.image_size[1]:
            image = data.centre_crop(image, self.image_size[0], SHORT_SIDE)
        else:
            image = tf.image.resize(image, self.image_size, method="bilinear")
            # The datasets hold 8-bit images: round as their resize did.
            image = tf.round(tf.clip_by_value(image, 0.0, 255.0))
        image = image.numpy() / 255.0
        return ((image - self.mean) / self.std).astype("float32")


def for_dataset(name, recipe="igc", *, data_dir=None):
    """The record of a `keras_igc.data` dataset, as `data.load` prepares its
    evaluation split (`recipe="msgc"`: ImageNet as the MSGC release does)."""
    from keras_igc import data

    spec = data._with_recipe(data.spec(name), recipe)
    view = "centre_crop" if spec.family == "imagenet" else "resize"
    return Preprocessing(
        image_size=(spec.image_size, spec.image_size), channels=spec.channels,
        mean=tuple(spec.mean), std=tuple(spec.std), view=view,
        class_names=data.class_names(name, data_dir=data_dir),
        source=f"dataset {name}",
    )  # fmt: skip


def for_normalization(mode, image_size, channels=3, classes=None):
    """A record for a model of `image_size` normalised as `mode` (a key of
    `statistics.NORMALIZATIONS`, e.g. `"igc-release"`, `"torch"`): ImageNet's
    centre crop for 1,000 classes or inputs of 128 pixels and more, a resize
    otherwise. ImageNet's class names for 1,000 classes."""
    mean, std = statistics.NORMALIZATIONS[statistics.check_normalization(mode)]
    if channels == 1:
        mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
    names = None
    if classes == 1000:
        from keras_igc import data

        names = data.class_names("imagenet2012")
    view = "centre_crop" if classes == 1000 or min(image_size) >= 128 else "resize"
    return Preprocessing(
        image_size=tuple(image_size), channels=channels, mean=tuple(mean),
        std=tuple(std), view=view, class_names=names, source=f"normalization {mode}",
    )  # fmt: skip


def read(model_path):
    """The record beside a model file (`preprocessing.json` in its folder),
    or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), RECORD_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return Preprocessing.from_json(f.read(), path)
