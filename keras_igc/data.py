"""tf.data input pipelines for the IGC paper's datasets, and an offline one.

`load(name, split)` returns batched `(images, labels)` ready for `model.fit`:

- `cifar10`, `cifar100`: pad 4, random 32x32 crop and horizontal flip in
  training; per-channel mean/std normalisation.
- `svhn_cropped`: no augmentation; training uses train+extra (604,388 images)
  as the paper does.
- `imagenet2012`: scale augmentation (short side 256-480), random 224 crop and
  flip in training; short side 256 and a centre 224 crop for evaluation.
  TFDS needs the archives downloaded by hand (see `DatasetUnavailableError`).
- `digits`: scikit-learn's handwritten digits (1,797 8x8 images, installed with
  the package), resized to 32x32, a fixed 80/20 split. Works with no network.

Pipelines cache decoded images (not ImageNet), then shuffle, augment in
parallel, batch and prefetch. With a `seed` the order and the augmentation are
reproducible.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_igc.validation import positive_int

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is and how the paper trains on it."""

    tfds_name: str | None
    image_size: int
    channels: int
    classes: int
    train_split: str
    eval_split: str
    augmentation: str  # "crop_flip", "scale_crop_flip" or "none"
    mean: tuple
    std: tuple
    epochs: int  # the paper's recipe
    batch_size: int
    family: str = "cifar"  # which applications fit it: "cifar" or "imagenet"


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DATASETS = {
    "cifar10": DatasetSpec(
        "cifar10", 32, 3, 10, "train", "test", "crop_flip",
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 400, 64,
    ),
    "cifar100": DatasetSpec(
        "cifar100", 32, 3, 100, "train", "test", "crop_flip",
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 400, 64,
    ),
    "svhn_cropped": DatasetSpec(
        "svhn_cropped", 32, 3, 10, "train+extra", "test", "none",
        (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 40, 64,
    ),
    "imagenet2012": DatasetSpec(
        "imagenet2012", 224, 3, 1000, "train", "validation", "scale_crop_flip",
        IMAGENET_MEAN, IMAGENET_STD, 120, 256, family="imagenet",
    ),
    # Mean and std of the resized training split (tests/test_data.py checks them).
    "digits": DatasetSpec(
        None, 32, 1, 10, "train", "test", "none", (0.3054,), (0.3234,), 20, 32,
    ),
}  # fmt: skip


class DatasetUnavailableError(ValueError):
    """A dataset that is not prepared where TFDS looks, with how to prepare it."""


def spec(name):
    """The `DatasetSpec` of a dataset name, or a ValueError listing the names."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}. Available: {', '.join(DATASETS)}.")
    return DATASETS[name]


def load(
    name,
    split="train",
    *,
    batch_size=None,
    data_dir=None,
    download=False,
    seed=None,
    shuffle_buffer=10_000,
    cache=None,
    repeat=False,
):
    """A batched, prefetched `tf.data.Dataset` of `(images, labels)`.

    Args:
        name: a key of `DATASETS`.
        split: `"train"` (shuffled and augmented, incomplete last batch
            dropped) or `"eval"` (in order, no augmentation).
        batch_size: default: the paper's batch size for the dataset.
        data_dir: where TFDS datasets are prepared (default: TFDS's own,
            `~/tensorflow_datasets`).
        download: let TFDS download and prepare the dataset if it is missing.
        seed: makes the shuffling and the augmentation reproducible.
        shuffle_buffer: size of the shuffle buffer in training.
        cache: cache decoded images in memory; default: every dataset but
            ImageNet.
        repeat: training only: an endless stream of epochs instead of one.

    Returns:
        Images are float32, normalised per channel, shaped
        `(batch, size, size, channels)`; labels are int64. In training, epoch
        `e` (counted from 0) is shuffled and augmented from `(seed, e)` alone,
        so the same seed gives the same batches however many times the
        dataset is iterated (a distribution strategy or a peek at it makes an
        iterator of its own).
    """
    dataset_spec = spec(name)
    if split not in ("train", "eval"):
        raise ValueError(f'`split` must be "train" or "eval". Received: {split!r}.')
    training = split == "train"
    batch_size = batch_size or dataset_spec.batch_size
    positive_int(batch_size, "batch_size")
    if data_dir is not None and not os.path.isdir(data_dir):
        raise DatasetUnavailableError(
            f"data_dir={data_dir!r} does not exist. Pass the folder where the "
            f"datasets were prepared ({_how_to_prepare(name, data_dir)})."
        )
    if dataset_spec.tfds_name is None:
        images = _digits(split)
    else:
        images = _tfds(dataset_spec, training, data_dir, download, seed)
    if cache if cache is not None else dataset_spec.family != "imagenet":
        images = images.cache()
    if training:
        images = _epochs(images, seed, shuffle_buffer, repeat)
        prepare = _training_transform(dataset_spec)
    else:
        prepare = _eval_transform(dataset_spec)
    dataset = images.map(prepare, num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    options = tf.data.Options()
    options.deterministic = seed is not None or not training
    return dataset.with_options(options).prefetch(AUTOTUNE)


def _epochs(images, seed, shuffle_buffer, repeat):
    """`((image, label), example seed)` for one or endless epochs.

    The shuffle and the per-example seeds keep random state; they are made
    inside `flat_map`, so each iterator gets its own, starting from `seed`.
    """

    def pipeline(_):
        shuffled = images.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
        if repeat:
            shuffled = shuffled.repeat()
        # One stateless seed per example, from a stream that itself is
        # reproducible with `seed` and differs from epoch to epoch.
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        return tf.data.Dataset.zip(shuffled, seeds)

    stream = tf.data.Dataset.range(1).flat_map(pipeline)
    if repeat:
        return stream.repeat()  # endless already: this only records it
    examples = images.cardinality()
    if examples >= 0:
        stream = stream.apply(tf.data.experimental.assert_cardinality(examples))
    return stream


def _tfds(dataset_spec, training, data_dir, download, seed):
    import tensorflow_datasets as tfds

    name = dataset_spec.tfds_name
    split = dataset_spec.train_split if training else dataset_spec.eval_split
    try:
        return tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            download=download,
            as_supervised=True,
            shuffle_files=training,
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )
    except Exception as error:  # TFDS raises many types from deep inside
        raise DatasetUnavailableError(
            f"Could not load {name!r} ({split}) from "
            f"{data_dir or 'the default TFDS folder (~/tensorflow_datasets)'}: "
            f"{type(error).__name__}: {str(error).splitlines()[0][:300]}\n"
            f"{_how_to_prepare(name, data_dir)}"
        ) from None


def _how_to_prepare(name, data_dir):
    target = data_dir or "DIR"
    if name == "imagenet2012":
        return (
            "ImageNet needs a manual download: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in {target}/downloads/manual, then run "
            f"`tfds build imagenet2012 --data_dir {target}`"
        )
    if name == "digits":
        return "the digits dataset needs no preparation"
    return (
        f"prepare it on a machine with internet access with `tfds build {name} "
        f"--data_dir {target}` and pass data_dir={target!r}, or pass "
        f"download=True (--download) to let TFDS fetch it"
    )


def _digits(split):
    """scikit-learn's digits: 8x8, values 0-16, resized to 32x32, fixed split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.RandomState(0).permutation(len(digits.target))
    cut = int(0.8 * len(order))
    chosen = order[:cut] if split == "train" else order[cut:]
    images = digits.images[chosen, :, :, None].astype("float32") * (255.0 / 16.0)
    images = tf.image.resize(images, (32, 32), method="bilinear")
    images = tf.cast(tf.round(images), tf.uint8)
    labels = digits.target[chosen].astype("int64")
    return tf.data.Dataset.from_tensor_slices((images, labels))


def _normalise(dataset_spec, image):
    image = tf.cast(image, tf.float32) / 255.0
    return (image - dataset_spec.mean) / dataset_spec.std


def _training_transform(dataset_spec):
    size = dataset_spec.image_size

    def transform(example, seed):
        image, label = example
        crop_seed, flip_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 2)
        )
        if dataset_spec.augmentation == "crop_flip":
            image = tf.image.pad_to_bounding_box(image, 4, 4, size + 8, size + 8)
            image = tf.image.stateless_random_crop(
                image, (size, size, dataset_spec.channels), crop_seed
            )
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        elif dataset_spec.augmentation == "scale_crop_flip":
            short = tf.random.stateless_uniform((), crop_seed, 256, 481, dtype=tf.int32)
            image = _resize_short_side(image, short)
            image = tf.image.stateless_random_crop(
                image,
                (size, size, 3),
                tf.random.experimental.stateless_fold_in(crop_seed, 1),
            )
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return _normalise(dataset_spec, image), label

    return transform


def _eval_transform(dataset_spec):
    size = dataset_spec.image_size

    def transform(image, label):
        if dataset_spec.augmentation == "scale_crop_flip":
            image = _resize_short_side(image, 256)
            height, width = tf.shape(image)[0], tf.shape(image)[1]
            image = tf.image.crop_to_bounding_box(
                image, (height - size) // 2, (width - size) // 2, size, size
            )
        return _normalise(dataset_spec, image), label

    return transform


def _resize_short_side(image, short):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(short, tf.float32) / tf.reduce_min(shape)
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    return tf.image.resize(image, new, method="bilinear", antialias=True)
