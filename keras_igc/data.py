"""tf.data input pipelines for the IGC paper's datasets, and an offline one.

`load(name, split)` returns batched `(images, labels)` ready for `model.fit`:

- `cifar10`, `cifar100`: pad 4 with the mean colour (as the release), random
  32x32 crop and horizontal flip in training; per-channel mean/std
  normalisation.
- `svhn_cropped`: no augmentation; training uses train+extra (604,388 images)
  as the paper does.
- `imagenet2012`: the IGC release's augmentation (`train_imagenet.py` through
  MXNet's default augmenter): scale (short side 256-480), aspect ratio
  0.75-1.25 around a canvas filled with the mean colour, random 224 crop,
  HSL colour jitter (hue +-36, saturation and lightness +-50 in OpenCV's 8-bit
  units) and flip; short side 256 and a centre 224 crop for evaluation; the
  release's mean and std. TFDS needs the archives downloaded by hand (see
  `DatasetUnavailableError`). With `recipe="msgc"`, the MSGC release's
  instead (`main_dist.py`, torchvision): a random crop of 8-100 % of the area
  with aspect ratio 3/4-4/3 resized to 224, flip, torchvision's mean and std.
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

from keras_igc import statistics
from keras_igc.validation import is_integer, non_negative_int, positive_int

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """What a dataset is, and the paper's schedule for it.

    Attributes:
        tfds_name: the TFDS name (None for `digits`, built from scikit-learn).
        image_size, channels, classes: the images and labels as the networks
            see them.
        train_split, eval_split: the TFDS splits.
        augmentation: `"crop_flip"`, `"igc_imagenet"`, `"msgc_imagenet"` or
            `"none"`.
        mean, std: per-channel statistics on a 0-1 scale
            (`keras_igc.statistics`).
        epochs, batch_size: the paper's schedule (`training.paper_recipe`).
        family: which applications fit it: `"cifar"` or `"imagenet"`.
    """

    tfds_name: str | None
    image_size: int
    channels: int
    classes: int
    train_split: str = "train"
    eval_split: str = "test"
    augmentation: str = "none"
    mean: tuple
    std: tuple
    epochs: int
    batch_size: int
    family: str = "cifar"


def _cifar_sized(tfds_name, classes, stats, **fields):
    mean, std = stats
    return DatasetSpec(
        tfds_name=tfds_name, image_size=32, channels=len(mean), classes=classes,
        mean=mean, std=std, **fields,
    )  # fmt: skip


DATASETS = {
    "cifar10": _cifar_sized(
        "cifar10", 10, statistics.CIFAR10, augmentation="crop_flip",
        epochs=400, batch_size=64,
    ),
    "cifar100": _cifar_sized(
        "cifar100", 100, statistics.CIFAR100, augmentation="crop_flip",
        epochs=400, batch_size=64,
    ),
    "svhn_cropped": _cifar_sized(
        "svhn_cropped", 10, statistics.SVHN, train_split="train+extra",
        epochs=40, batch_size=64,
    ),
    "imagenet2012": DatasetSpec(
        tfds_name="imagenet2012", image_size=224, channels=3, classes=1000,
        eval_split="validation", augmentation="igc_imagenet",
        mean=statistics.IMAGENET_IGC_RELEASE[0],
        std=statistics.IMAGENET_IGC_RELEASE[1],
        epochs=120, batch_size=256, family="imagenet",
    ),
    "digits": _cifar_sized(None, 10, statistics.DIGITS, epochs=20, batch_size=32),
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
    recipe="igc",
    start=0,
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
        recipe: `"igc"` (the IGC release's augmentation and statistics) or
            `"msgc"` (ImageNet as the MSGC release prepares it; other datasets
            as for `"igc"`).
        start: training only: the number of batches to skip, so that the
            stream begins where an earlier one stopped (a resumed run). Skipped
            examples are not augmented; with a `seed`, batch `start + i` of
            this stream equals batch `start + i` of the stream from 0.

    Returns:
        Images are float32, normalised per channel, shaped
        `(batch, size, size, channels)`; labels are int64. In training every
        iterator starts from `seed`: with a seed, the same batches come in the
        same order however many times the dataset has been iterated before (a
        distribution strategy or a peek at it makes an iterator of its own).
        Each pass over the split has an order and augmentation of its own,
        a function of `seed` and the example's position in the stream alone,
        so a stream started at `start` continues one started at 0 exactly.
    """
    dataset_spec = _with_recipe(spec(name), recipe)
    if split not in ("train", "eval"):
        raise ValueError(f'`split` must be "train" or "eval". Received: {split!r}.')
    training = split == "train"
    if batch_size is None:
        batch_size = dataset_spec.batch_size
    batch_size = positive_int(batch_size, "batch_size")
    shuffle_buffer = positive_int(shuffle_buffer, "shuffle_buffer")
    start = non_negative_int(start, "start")
    if seed is not None and not is_integer(seed):
        raise ValueError(f"`seed` must be an integer or None. Received: seed={seed!r}.")
    if start and not training:
        raise ValueError(
            f"`start` positions a training stream; the evaluation split is read "
            f"whole, in order. Received: split={split!r}, start={start}."
        )
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
        images = _epochs(images, seed, shuffle_buffer, repeat, start * batch_size)
        prepare = _training_transform(dataset_spec)
    else:
        prepare = _eval_transform(dataset_spec)
    dataset = images.map(prepare, num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    options = tf.data.Options()
    options.deterministic = True
    # No autotuning thread: an iterator freed by Python's garbage collector
    # waited in its destructor for that thread (which sleeps up to 60 s
    # between rounds), holding the GIL: the process stalled 3-66 s with no
    # CPU used, at random points of a long session. Without it an AUTOTUNE
    # map still runs a call per core (as fast as two calls on two cores).
    options.autotune.enabled = False
    return dataset.with_options(options).prefetch(AUTOTUNE)


def _with_recipe(dataset_spec, recipe):
    if recipe not in ("igc", "msgc"):
        raise ValueError(f'`recipe` must be "igc" or "msgc". Received: {recipe!r}.')
    if recipe == "igc" or dataset_spec.family != "imagenet":
        return dataset_spec
    return dataclasses.replace(
        dataset_spec,
        augmentation="msgc_imagenet",
        mean=statistics.IMAGENET_TORCHVISION[0],
        std=statistics.IMAGENET_TORCHVISION[1],
    )


def _epochs(images, seed, shuffle_buffer, repeat, skip=0):
    """`((image, label), example seed)` for one or endless passes over
    `images`, from example `skip` of that stream on.

    Nothing here carries random state from one example to the next: pass `k`
    is shuffled with a seed drawn from `(seed, k)` and the example at
    position `p` of the stream is augmented with the stateless seed
    `(seed, p)`. So any position can be reached by skipping, and skipping
    costs no augmentation (only reading the examples of the current pass).
    """
    if seed is None:
        seed = int(np.random.randint(2**31))
    examples = int(images.cardinality())
    if skip and examples < 0:
        raise ValueError(
            "Cannot start a training stream mid-way: the dataset does not know "
            "its size. Pass start=0."
        )
    first_pass, offset = divmod(skip, examples) if skip else (0, 0)
    if not repeat and first_pass:
        raise ValueError(
            f"start={skip} examples is past the end of the split "
            f"({examples} examples); pass repeat=True for an endless stream."
        )
    seed = tf.constant(seed, tf.int64)

    def one_pass(k):
        # The graph seed of this pass's function only: with it the order
        # depends on `seed` alone, not on the process's global seed (and
        # TensorFlow cannot take a tensor op seed when the global one is 0).
        tf.compat.v1.set_random_seed(1)
        order = tf.random.stateless_uniform(
            (), tf.stack([seed, k]), minval=None, maxval=None, dtype=tf.int64
        )
        return images.shuffle(
            shuffle_buffer, seed=order, reshuffle_each_iteration=False
        )

    passes = tf.data.Dataset.range(first_pass, first_pass + 1)
    if repeat:
        passes = tf.data.Dataset.counter(first_pass)
    stream = passes.flat_map(one_pass).skip(offset)
    positions = tf.data.Dataset.counter(skip).map(lambda p: tf.stack([seed, p]))
    stream = tf.data.Dataset.zip(stream, positions)
    if not repeat and examples >= 0:
        stream = stream.apply(tf.data.experimental.assert_cardinality(examples - skip))
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
            # One file order for every pass (each pass shuffles its examples
            # with a seed of its own), so a resumed stream reads what an
            # uninterrupted one would.
            read_config=tfds.ReadConfig(
                shuffle_seed=seed, shuffle_reshuffle_each_iteration=False
            ),
        )
    except Exception as error:  # TFDS raises many types from deep inside
        raise DatasetUnavailableError(
            f"Could not load {name!r} ({split}) from "
            f"{data_dir or 'the default TFDS folder (~/tensorflow_datasets)'}: "
            f"{type(error).__name__}: {str(error).splitlines()[0][:300]}\n"
            f"{_how_to_prepare(name, data_dir)}"
        ) from None


def first_images(name, split, count, *, data_dir=None, download=False):
    """The first `count` images of a split as one array (training: the
    stream of `seed=0`, augmented as in training), as `load` prepares them."""
    batches = load(
        name, split, batch_size=64, seed=0 if split == "train" else None,
        data_dir=data_dir, download=download,
    )  # fmt: skip
    images, held = [], 0
    for batch, _ in batches:
        images.append(batch.numpy())
        held += len(images[-1])
        if held >= count:
            break
    return np.concatenate(images)[:count]


def class_names(name, *, data_dir=None):
    """The label of each class of a dataset, index by index, or None where
    they are not known here (a TFDS dataset not prepared in `data_dir`)."""
    dataset_spec = spec(name)
    if dataset_spec.tfds_name is None:  # digits
        return [str(i) for i in range(dataset_spec.classes)]
    if name == "imagenet2012":  # shipped: the release's index order
        from importlib import resources

        text = resources.files("keras_igc").joinpath("imagenet_classes.txt")
        return text.read_text().splitlines()
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(dataset_spec.tfds_name, data_dir=data_dir)
        if not builder.is_prepared():
            return None
        return list(builder.info.features["label"].names)
    except Exception:  # TFDS raises many types; the names are optional
        return None


def split_size(name, split="eval", *, data_dir=None, download=False):
    """`(split name, number of examples)` of a dataset's training or
    evaluation split (what `load` reads, before batching)."""
    dataset_spec = spec(name)
    training = split == "train"
    if dataset_spec.tfds_name is None:
        images = _digits(split)
    else:
        images = _tfds(dataset_spec, training, data_dir, download, None)
    split_name = dataset_spec.train_split if training else dataset_spec.eval_split
    return split_name, int(images.cardinality())


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


def _mean_colour(dataset_spec):
    """The release's fill value: the mean colour rounded to 0-255 integers."""
    return tf.constant([round(255 * m) for m in dataset_spec.mean], tf.float32)


def _pad(image, paddings, fill):
    """`tf.pad` with the colour `fill` instead of black."""
    image = tf.cast(image, tf.float32)
    return tf.pad(image - fill, paddings) + fill


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
            # The release pads with the mean colour (MXNet's fill_value).
            image = _pad(image, [[4, 4], [4, 4], [0, 0]], _mean_colour(dataset_spec))
            image = tf.image.stateless_random_crop(
                image, (size, size, dataset_spec.channels), crop_seed
            )
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        elif dataset_spec.augmentation == "igc_imagenet":
            image = _igc_imagenet_augment(dataset_spec, image, crop_seed)
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        elif dataset_spec.augmentation == "msgc_imagenet":
            image = _random_resized_crop(image, size, crop_seed)
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return _normalise(dataset_spec, image), label

    return transform


def _eval_transform(dataset_spec):
    size = dataset_spec.image_size

    def transform(image, label):
        if dataset_spec.augmentation in ("igc_imagenet", "msgc_imagenet"):
            image = centre_crop(image, size)
        return _normalise(dataset_spec, image), label

    return transform


def _random_resized_crop(image, size, seed):
    """torchvision's `RandomResizedCrop(size)`: a box of 8-100 % of the area
    with aspect ratio 3/4-4/3 (10 tries), resized to `size` x `size`. TF's
    sampler falls back to the whole image where torchvision takes a centre
    crop of clamped ratio (rare: after 10 failed tries)."""
    begin, box, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.zeros((1, 0, 4)),
        seed=seed,
        area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, box)
    image = tf.image.resize(image, (size, size), antialias=True)
    return tf.ensure_shape(image, (size, size, None))


def centre_crop(image, size, short_side=256):
    """The release's evaluation view: the short side resized to `short_side`
    (at least `size`), then the centre `size` x `size` crop, as float32."""
    image = _resize_short_side(image, max(short_side, size))
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    return tf.image.crop_to_bounding_box(
        image, (height - size) // 2, (width - size) // 2, size, size
    )


def _resize_short_side(image, short):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(short, tf.float32) / tf.reduce_min(shape)
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    return tf.image.resize(image, new, method="bilinear", antialias=True)


# The release's MXNet ImageRecordIter settings (`train_imagenet.py`): its
# records hold images with a short side of 480.
RELEASE_SHORT_SIDE = 480
RELEASE_SCALE = (0.533, 1.0)  # 480 * 0.533 = 256
RELEASE_MIN_SIZE = 256
RELEASE_MAX_ASPECT = 0.25  # ratio in [0.75, 1.25]
RELEASE_HSL = (36, 50, 50)  # OpenCV 8-bit units: hue in [0, 180], S and L in [0, 255]


def _igc_imagenet_augment(dataset_spec, image, seed):
    """Scale and aspect jitter, random crop and HSL jitter as MXNet's default
    image augmenter does them with the release's settings."""
    size = dataset_spec.image_size
    scale_seed, ratio_seed, crop_seed, colour_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4)
    )
    scale = tf.random.stateless_uniform((), scale_seed, *RELEASE_SCALE)
    ratio = tf.random.stateless_uniform(
        (), ratio_seed, 1 - RELEASE_MAX_ASPECT, 1 + RELEASE_MAX_ASPECT
    )
    image = _scale_and_aspect(image, scale, ratio, _mean_colour(dataset_spec))
    image = tf.image.stateless_random_crop(image, (size, size, 3), crop_seed)
    offsets = tf.random.stateless_uniform((3,), colour_seed)
    limits = tf.constant(RELEASE_HSL, tf.float32)
    # `int(u * 2a - a)` in the augmenter: truncated toward zero.
    hue, saturation, lightness = tf.unstack(
        tf.math.floor(tf.abs(offsets * 2 * limits - limits))
        * tf.sign(offsets * 2 * limits - limits)
    )
    return _hls_jitter(image, hue, saturation, lightness)


def _scale_and_aspect(image, scale, ratio, fill):
    """MXNet's affine step: the canvas is `scale` times the (short side 480)
    image, at least 256 a side; the content is stretched by `2 * scale /
    (1 + ratio)` across and `ratio` times that down, centred, and the rest of
    the canvas takes the colour `fill`."""
    image = tf.cast(image, tf.float32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    shape = shape * (RELEASE_SHORT_SIDE / tf.reduce_min(shape))  # the record image
    across = 2 * scale / (1 + ratio)
    content = tf.cast(tf.round(shape * tf.stack([ratio * across, across])), tf.int32)
    canvas = tf.cast(tf.maximum(float(RELEASE_MIN_SIZE), scale * shape), tf.int32)
    image = tf.image.resize(image, content, method="bilinear", antialias=True)
    # Centre the content on the canvas: crop where larger, pad where smaller.
    offset = (content - canvas) // 2
    crop = tf.maximum(offset, 0)
    kept = tf.minimum(content, canvas)
    image = tf.slice(image, [crop[0], crop[1], 0], [kept[0], kept[1], 3])
    pad = tf.maximum(-offset, 0)
    after = canvas - kept - pad
    return _pad(image, [[pad[0], after[0]], [pad[1], after[1]], [0, 0]], fill)


def _hls_jitter(image, hue, saturation, lightness):
    """Add to the hue, saturation and lightness of RGB values in [0, 255], in
    OpenCV's 8-bit HLS units (hue 0-180, the others 0-255), clamped, as MXNet's
    augmenter does (the hue is clamped, not wrapped)."""
    h, l, s = tf.unstack(_rgb_to_hls(image / 255.0), axis=-1)
    h = tf.clip_by_value(h + hue * 2.0, 0.0, 360.0)
    l = tf.clip_by_value(l + lightness / 255.0, 0.0, 1.0)
    s = tf.clip_by_value(s + saturation / 255.0, 0.0, 1.0)
    return _hls_to_rgb(tf.stack([h, l, s], axis=-1)) * 255.0


def _rgb_to_hls(rgb):
    """RGB in [0, 1] to (hue in degrees [0, 360), lightness, saturation)."""
    r, g, b = tf.unstack(rgb, axis=-1)
    high, low = tf.reduce_max(rgb, axis=-1), tf.reduce_min(rgb, axis=-1)
    spread = high - low
    lightness = (high + low) / 2
    grey = spread <= 0
    safe = tf.where(grey, 1.0, spread)
    saturation = tf.where(
        grey,
        0.0,
        spread / tf.where(lightness < 0.5, high + low, 2.0 - high - low),
    )
    hue = tf.where(
        high == r,
        (g - b) / safe,
        tf.where(high == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe),
    )
    hue = tf.where(grey, 0.0, tf.math.floormod(60.0 * hue, 360.0))
    return tf.stack([hue, lightness, saturation], axis=-1)


def _hls_to_rgb(hls):
    h, l, s = tf.unstack(hls, axis=-1)
    q = tf.where(l < 0.5, l * (1 + s), l + s - l * s)
    p = 2 * l - q

    def channel(shift):
        t = tf.math.floormod(h + shift, 360.0) / 60.0
        return tf.where(
            t < 1,
            p + (q - p) * t,
            tf.where(t < 3, q, tf.where(t < 4, p + (q - p) * (4 - t), p)),
        )

    return tf.stack([channel(120.0), channel(0.0), channel(-120.0)], axis=-1)
