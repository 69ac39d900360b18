"""Input pipelines, on TFDS mock data and the offline digits (no network)."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_igc import data, statistics

pytestmark = pytest.mark.tensorflow_only

TFDS_NAMES = ["cifar10", "cifar100", "svhn_cropped", "imagenet2012"]


def first_batches(dataset, n=2):
    return [tuple(t.numpy() for t in batch) for batch in dataset.take(n)]


@pytest.mark.parametrize("name", TFDS_NAMES + ["digits"])
@pytest.mark.parametrize("split", ["train", "eval"])
def test_shapes_dtypes_and_ranges(name, split):
    spec = data.DATASETS[name]
    with tfds.testing.mock_data(num_examples=12):
        images, labels = first_batches(data.load(name, split, batch_size=4, seed=0), 1)[
            0
        ]
    size = spec.image_size
    assert images.shape == (4, size, size, spec.channels)
    assert images.dtype == np.float32 and labels.dtype == np.int64
    low = (0 - np.array(spec.mean)) / spec.std
    high = (1 - np.array(spec.mean)) / spec.std
    assert np.all(images >= low - 1e-4) and np.all(images <= high + 1e-4)
    assert np.all((labels >= 0) & (labels < spec.classes))


@pytest.mark.parametrize(
    "name, augmented", [("cifar10", True), ("svhn_cropped", False)]
)
def test_augmentation_is_random_in_training_and_absent_in_evaluation(name, augmented):
    with tfds.testing.mock_data(num_examples=8):
        train = data.load(
            name, "train", batch_size=8, seed=1, shuffle_buffer=1, repeat=True
        )
        epoch1, epoch2 = first_batches(train, 2)  # one batch is one epoch
        again = first_batches(train, 1)[0]
        evaluation = data.load(name, "eval", batch_size=8)
        eval1, eval2 = first_batches(evaluation, 1), first_batches(evaluation, 1)
    assert np.array_equal(eval1[0][0], eval2[0][0])
    np.testing.assert_array_equal(epoch1[1], epoch2[1])  # same order
    assert (not np.array_equal(epoch1[0], epoch2[0])) == augmented
    # A new iterator starts again from the seed: it does not continue the
    # random state of an earlier one (a distribution strategy makes its own).
    np.testing.assert_array_equal(again[0], epoch1[0])


def test_a_seed_makes_training_reproducible():
    def run(seed):
        with tfds.testing.mock_data(num_examples=16):
            return first_batches(
                data.load("cifar10", "train", batch_size=4, seed=seed), 3
            )

    a, b, c = run(7), run(7), run(8)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(
        not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=True)
    )


@pytest.mark.parametrize("split", ["train", "eval"])
def test_pipelines_start_no_autotuning_thread(split):
    # An iterator freed by the garbage collector waited in its destructor,
    # holding the GIL, for that thread's next round: stalls of 3-66 s with
    # no CPU used, at random points of a long process (the suite's workers).
    dataset = data.load("digits", split, batch_size=8, seed=0)
    assert dataset.options().autotune.enabled is False
    assert dataset.options().deterministic is True
    assert next(iter(dataset))[0].shape == (8, 32, 32, 1)


def test_digits_split_is_fixed_and_complete():
    train = data.load("digits", "train", batch_size=1000, seed=0)
    evaluation = data.load("digits", "eval", batch_size=1000)
    n_train = sum(int(y.shape[0]) for _, y in train)
    n_eval = sum(int(y.shape[0]) for _, y in evaluation)
    assert n_train == 1000  # 1437 training images; the incomplete batch is dropped
    assert n_eval == 360
    assert set(np.concatenate([y.numpy() for _, y in evaluation])) == set(range(10))


def test_digits_statistics_are_those_of_the_training_split():
    train = data.load("digits", "train", batch_size=1437)
    images = np.concatenate([x.numpy() for x, _ in train])
    assert abs(images.mean()) < 1e-3 and abs(images.std() - 1) < 1e-3


def test_imagenet_evaluation_is_a_centre_crop():
    with tfds.testing.mock_data(num_examples=2):
        images, _ = first_batches(data.load("imagenet2012", "eval", batch_size=2), 1)[0]
    assert images.shape == (2, 224, 224, 3)
    # Short side already 256: no resize, the crop starts at ((256-224)/2, (320-224)/2).
    rows, columns = np.meshgrid(np.arange(256), np.arange(320), indexing="ij")
    image = np.stack([rows, columns, rows + columns], -1).astype("float32")
    crop = data.centre_crop(tf.constant(image), 224).numpy()
    np.testing.assert_array_equal(crop, image[16:240, 48:272])
    # A larger image is first resized to a short side of 256, keeping its aspect.
    big = np.zeros((512, 1024, 3), "float32")
    big[:, 512 - 8 : 512 + 8] = 255  # a vertical band through the centre
    crop = data.centre_crop(tf.constant(big), 224).numpy()
    band = np.flatnonzero(crop[112, :, 0] > 127)
    assert crop.shape == (224, 224, 3) and 104 <= band.min() and band.max() <= 119


def test_msgc_imagenet_is_torchvisions_random_resized_crop_and_statistics():
    with tfds.testing.mock_data(num_examples=2):
        igc, _ = first_batches(data.load("imagenet2012", "eval", batch_size=2), 1)[0]
        msgc, _ = first_batches(
            data.load("imagenet2012", "eval", batch_size=2, recipe="msgc"), 1
        )[0]
        train, _ = first_batches(
            data.load("imagenet2012", "train", batch_size=2, recipe="msgc", seed=0), 1
        )[0]
    assert train.shape == (2, 224, 224, 3)
    # The same centre crop, normalised with torchvision's statistics.
    igc_mean, igc_std = statistics.IMAGENET_IGC_RELEASE
    torch_mean, torch_std = statistics.IMAGENET_TORCHVISION
    pixels = np.asarray(igc) * igc_std + np.array(igc_mean)
    np.testing.assert_allclose(
        np.asarray(msgc), (pixels - torch_mean) / torch_std, atol=1e-4
    )
    # Boxes of 8-100 % of the area with ratios 3/4-4/3: on a ramp image the
    # crop's corners give the box.
    height, width = 300, 400
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    ramp = np.stack([rows, cols, 0 * rows], -1).astype("float32")
    for seed in range(20):
        crop = data._random_resized_crop(ramp, 32, tf.constant([seed, 1])).numpy()
        box_h = crop[-1, 0, 0] - crop[0, 0, 0]  # corner to corner
        box_w = crop[0, -1, 1] - crop[0, 0, 1]
        area = (box_h * 32 / 31) * (box_w * 32 / 31) / (height * width)
        assert 0.07 <= area <= 1.0
        assert 3 / 4 * 0.8 <= box_w / box_h <= 4 / 3 * 1.25
    with pytest.raises(ValueError, match="`recipe` must be"):
        data.load("digits", recipe="torch")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(batch_size=0), "batch_size=0"),
        (dict(batch_size=-3), "batch_size=-3"),
        (dict(batch_size=2.5), "batch_size=2.5"),
        (dict(shuffle_buffer=0), "shuffle_buffer=0"),
        (dict(start=-1), "start=-1"),
        (dict(seed="7"), "seed='7'"),
        (dict(split="eval", start=3), "evaluation split is read whole"),
        (dict(start=100), "past the end of the split"),
    ],
)
def test_bad_counts_are_errors_naming_them(arguments, message):
    with pytest.raises(ValueError, match=message):
        data.load("digits", **{"split": "train", "batch_size": 32, **arguments})


@pytest.mark.parametrize("name", ["digits", "cifar10"])
def test_a_stream_started_mid_way_continues_the_stream_from_zero(name):
    """Batch `start + i` is the same whether the stream started at 0 or at
    `start`, across the end of a pass over the split (digits: 1,437 training
    images, 44.9 batches of 32); each pass has its own order."""
    batch, start = (32, 43) if name == "digits" else (4, 7)

    def stream(begin, count):
        load = dict(batch_size=batch, seed=5, repeat=True, start=begin)
        return first_batches(data.load(name, "train", **load), count)

    with tfds.testing.mock_data(num_examples=10):
        whole, resumed = stream(0, start + 4), stream(start, 4)
    for (x, y), (xr, yr) in zip(whole[start:], resumed, strict=True):
        np.testing.assert_array_equal(x, xr)
        np.testing.assert_array_equal(y, yr)
    if name == "digits":
        passes = first_batches(
            data.load(name, "train", batch_size=1437, seed=5, repeat=True), 2
        )
        assert sorted(passes[0][1]) == sorted(passes[1][1])
        assert not np.array_equal(passes[0][1], passes[1][1])


def test_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'.*cifar10"):
        data.load("mnist")


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(data.DatasetUnavailableError, match="does not exist"):
        data.load("cifar10", data_dir=str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    "name, hint",
    [("cifar10", "tfds build cifar10"), ("imagenet2012", "downloads/manual")],
)
def test_unprepared_dataset_says_how_to_prepare_it(tmp_path, name, hint):
    with pytest.raises(data.DatasetUnavailableError, match=hint) as error:
        data.load(name, data_dir=str(tmp_path), download=False)
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_hls_conversion_and_jitter_match_colorsys():
    import colorsys

    import tensorflow as tf

    rgb = np.random.RandomState(0).rand(400, 3).astype("float32")
    rgb[:20] = rgb[:20, :1]  # greys
    hls = data._rgb_to_hls(tf.constant(rgb)).numpy()
    expected = np.array([colorsys.rgb_to_hls(*p) for p in rgb])
    expected[:, 0] *= 360.0
    np.testing.assert_allclose(hls, expected, atol=2e-4)
    np.testing.assert_allclose(
        data._hls_to_rgb(tf.constant(hls)).numpy(), rgb, atol=1e-5
    )

    # OpenCV 8-bit units: hue +20 (40 degrees), saturation -30, lightness +50,
    # each clamped (the hue too: MXNet clamps it rather than wrapping it).
    jittered = data._hls_jitter(tf.constant(rgb * 255), 20.0, -30.0, 50.0).numpy()

    def reference(p):
        h, l, s = colorsys.rgb_to_hls(*p)
        h = min(max(h * 360 + 40, 0), 360) / 360
        l = min(max(l + 50 / 255, 0), 1)
        s = min(max(s - 30 / 255, 0), 1)
        return np.array(colorsys.hls_to_rgb(h % 1.0, l, s)) * 255

    np.testing.assert_allclose(jittered, [reference(p) for p in rgb], atol=2e-3)


def test_release_scale_and_aspect_fill_the_canvas_with_the_mean_colour():
    import tensorflow as tf

    colour, fill = [10.0, 200.0, 30.0], tf.constant([123.0, 113.0, 99.0])
    image = tf.fill((300, 400, 3), 1.0) * colour
    # scale 1, ratio 1: the record image itself (short side 480).
    plain = data._scale_and_aspect(image, 1.0, 1.0, fill).numpy()
    assert plain.shape == (480, 640, 3)
    np.testing.assert_allclose(plain, np.broadcast_to(colour, plain.shape), atol=1e-3)
    # scale 0.533, ratio 1.25: a 256 x 341 canvas; the content is 303 wide
    # (filled at the sides) and 284 high (cut at the top and bottom).
    out = data._scale_and_aspect(image, 0.533, 1.25, fill).numpy()
    assert out.shape == (256, 341, 3)
    np.testing.assert_allclose(out[:, :15], 1.0 * np.broadcast_to(fill, (256, 15, 3)))
    np.testing.assert_allclose(
        out[:, 25:-25], np.broadcast_to(colour, (256, 291, 3)), atol=1e-3
    )


def test_imagenet_training_jitters_colour_and_aspect_from_the_seed():
    with tfds.testing.mock_data(num_examples=4):
        a = first_batches(data.load("imagenet2012", "train", batch_size=2, seed=3), 1)
        b = first_batches(data.load("imagenet2012", "train", batch_size=2, seed=3), 1)
        c = first_batches(data.load("imagenet2012", "train", batch_size=2, seed=4), 1)
    assert a[0][0].shape == (2, 224, 224, 3)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    assert not np.array_equal(a[0][0], c[0][0])


def test_cifar_crops_pad_with_the_mean_colour():
    import tensorflow as tf

    spec = data.DATASETS["cifar10"]
    black = tf.zeros((32, 32, 3), tf.uint8)
    transform = data._training_transform(spec)
    seeds = [tf.constant([i, 0], tf.int64) for i in range(20)]
    images = [transform((black, 0), seed)[0].numpy() for seed in seeds]
    padded = (np.round(255 * np.array(spec.mean)) / 255 - spec.mean) / spec.std
    black_value = (0 - np.array(spec.mean)) / spec.std
    # Some crop shows the border, and there it has the mean colour, not black.
    border = [img[0, 0] for img in images if not np.allclose(img[0, 0], black_value)]
    assert border
    np.testing.assert_allclose(
        border, np.broadcast_to(padded, (len(border), 3)), atol=1e-6
    )


# MXNet's own augmenter (mx.io.ImageRecordIter 1.9.1) on test images, written
# by fixtures/generate/augment_mxnet.py; the images are made again here.
MXNET = pathlib.Path(__file__).parent / "fixtures" / "mxnet_augment.npz"


def _mxnet_test_images():
    colour = np.random.RandomState(0).randint(0, 256, (24, 32, 3)).astype("uint8")
    gradient = np.zeros((480, 640, 3), "uint8")
    gradient[:, :, 0] = np.linspace(20, 230, 640)[None, :]
    gradient[:, :, 1] = np.linspace(40, 200, 480)[:, None]
    gradient[:, :, 2] = 90
    return colour.astype("float32"), gradient.astype("float32")


@pytest.mark.parametrize("channel, limit", [("h", 36), ("s", 50), ("l", 50)])
def test_hsl_jitter_is_what_mxnets_augmenter_does(channel, limit):
    colour, _ = _mxnet_test_images()
    samples = np.load(MXNET)[channel].astype("float32")
    which = {"h": 0, "s": 1, "l": 2}[channel]
    candidates = {}
    for offset in range(-limit, limit + 1):
        args = [0.0, 0.0, 0.0]
        args[which] = float(offset)
        candidates[offset] = data._hls_jitter(colour, *args).numpy()
    found = []
    for sample in samples:
        errors = {k: np.abs(v - sample).mean() for k, v in candidates.items()}
        offset = min(errors, key=errors.get)
        # OpenCV rounds H, L and S to 8 bits: a few levels at most, 1 on average.
        assert np.abs(candidates[offset] - sample).max() <= 6, offset
        assert errors[offset] <= 1.0, offset
        found.append(offset)
    assert len(set(found)) >= 6 and max(map(abs, found)) > limit // 3  # random


def test_scale_and_aspect_geometry_is_mxnets():
    _, gradient = _mxnet_test_images()
    fixture = np.load(MXNET)
    white = np.float32([255, 255, 255])  # stock MXNet fills with fill_value=255
    for row, column in zip(
        fixture["affine_row"][:6], fixture["affine_column"][:6], strict=True
    ):
        best = None
        for ratio in np.linspace(0.75, 1.25, 101):
            ours = data._scale_and_aspect(gradient, 0.8, float(ratio), white).numpy()
            error = (
                np.abs(ours[192] - row).mean() + np.abs(ours[:, 256] - column).mean()
            )
            if best is None or error < best[0]:
                best = (error, ours)
        error, ours = best
        assert ours.shape == (384, 512, 3)
        assert error < 2.0  # mean abs on 0-255, two lines of the image
        for ours_line, line in ((ours[192], row), (ours[:, 256], column)):
            filled = np.all(line == 255, axis=-1)
            ours_filled = np.all(ours_line > 254.5, axis=-1)
            # The canvas border agrees to one pixel (OpenCV rounds sub-pixels).
            assert abs(int(filled.sum()) - int(ours_filled.sum())) <= 2
