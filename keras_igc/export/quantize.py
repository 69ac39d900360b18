"""8-bit artifacts: the schemes, the calibration images and the report.

`"int8"` (static): int8 weights with one scale per output channel (grouped
and depthwise convolutions need them: their channels' ranges differ by
orders of magnitude) and int8 activations whose ranges come from calibration
examples run through the folded float model. `"dynamic"`: int8 weights,
float activations. Both start from the folded clone `prepare` made for the
runtime, so BatchNorm is already inside the convolutions' scales. Each
runtime writes its own 8-bit file (`write_int8` of its adapter,
`keras_igc.export.runtimes`); this module checks what they are given and
holds what the export reports about them.
"""

import dataclasses

import numpy as np

SCHEMES = ("int8", "dynamic")
DEFAULT_CALIBRATION = 256  # examples: a few hundred settle the ranges


@dataclasses.dataclass
class QuantizationReport:
    """What an export's 8-bit files hold (`ExportResult.quantization`).

    Attributes:
        scheme: `"int8"` or `"dynamic"`.
        int8_io: whether the int8 LiteRT file takes and gives int8 tensors.
        calibration_examples: how many images set the activation ranges
            (0 for a quantization-aware model: it learned them).
        quantize_aware: whether the model trained under int8 rounding
            (`keras_igc.quantization`): its int8 files take its learned
            ranges and run every convolution in int8, as it trained.
        kept_float: `{runtime: {node: why}}`, the convolutions the runtime's
            int8 rule keeps float (where its integer kernel measured slower);
            only runtimes whose rule keeps some kind of convolution float.
        float_ops: `{runtime: {op: count}}`, the operations left in float
            (no integer kernel, or the scheme leaves them float).
        gate_logits: with MSGC layers, `{runtime: "int8" | "float32"}`: the
            type of the mask logits the gates compare with their threshold
            (`"int8"`: a logit within a quantization step of it can decide
            otherwise than in float; `check_quantized` counts the flips).
    """

    scheme: str
    int8_io: bool
    calibration_examples: int
    quantize_aware: bool = False
    kept_float: dict = dataclasses.field(default_factory=dict)
    float_ops: dict = dataclasses.field(default_factory=dict)
    gate_logits: dict | None = None

    def to_dict(self):
        """As `export_report.json` holds it (no `gate_logits` without gates)."""
        data = dataclasses.asdict(self)
        if self.gate_logits is None:
            del data["gate_logits"]
        return data


def gate_logits_type(types):
    """One runtime's answer from the types its gates compare (`gate_logits`
    of an adapter): `"int8"` if any gate compares int8 values, else
    `"float32"`; None without MSGC gates."""
    if not types:
        return None
    return "int8" if "int8" in types else "float32"


def check_scheme(quantize, int8_io=False):
    """`quantize` (None or one of `SCHEMES`), else a ValueError naming it."""
    if quantize is not None and quantize not in SCHEMES:
        raise ValueError(
            f"`quantize` must be None or one of {SCHEMES} (--quantize int8 or "
            f"dynamic). Received: quantize={quantize!r}."
        )
    if int8_io and quantize != "int8":
        raise ValueError(
            f"int8 inputs and outputs (--int8-io) need full-integer "
            f"quantization: pass quantize='int8' (--quantize int8). Received: "
            f"quantize={quantize!r}."
        )
    return quantize


def parse_calibration(text):
    """`"digits:300"` -> `("digits", 300)`; `"digits"` -> the default count."""
    from keras_igc import quick

    name, _, count = str(text).partition(":")
    if not count:
        return name, quick.examples(DEFAULT_CALIBRATION)
    try:
        number = int(count)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(
            f"The calibration count after ':' must be a positive number of "
            f"examples, e.g. {name}:300. Received: {text!r}."
        )
    return name, quick.examples(number)


# The most examples a calibration stream may give: a few hundred settle the
# ranges, and a stream without end would never finish.
MAX_CALIBRATION = 10_000


def calibration_images(calibration, input_shape, *, data_dir=None, download=False):
    """Calibration images as one float32 array shaped like the model's input.

    `calibration`: an array of images, a finite `tf.data.Dataset` (or other
    iterable) of images or of `(images, labels)` batches, or
    `"DATASET[:N]"`: the first N examples of the training split of a
    `keras_igc.data` dataset (the held-out split is left for the agreement
    check). Every image is checked before any is used: at least one, at most
    `MAX_CALIBRATION`, numbers, all finite, shaped like the model's input.
    """
    if calibration is None:
        raise ValueError(
            "quantize='int8' needs calibration examples to set the activation "
            "ranges: pass calibration= an array or dataset of images, or "
            "--calibration DATASET[:N] (e.g. digits:300)."
        )
    if isinstance(calibration, str):
        images = _dataset_images(calibration, data_dir, download)
    elif isinstance(calibration, np.ndarray) or hasattr(calibration, "__array__"):
        images = calibration
    else:
        images = _stream_images(calibration)
    return _checked_images(images, input_shape)


def _stream_images(stream):
    """The images of a finite stream of batches, refusing an endless one."""
    import itertools

    cardinality = getattr(stream, "cardinality", None)
    if cardinality is not None and int(cardinality()) == -1:  # tf.data.INFINITE
        raise ValueError(
            "The calibration dataset repeats without end (its cardinality is "
            "infinite): pass a finite one, e.g. dataset.take(32) batches."
        )
    if hasattr(stream, "as_numpy_iterator"):
        stream = stream.as_numpy_iterator()
    try:
        batches = iter(stream)
    except TypeError:
        raise ValueError(
            f"`calibration` must be an array of images, a dataset or iterable of "
            f"image batches, or 'DATASET[:N]'. Received: {type(stream).__name__}."
        ) from None
    images, count = [], 0
    for batch in itertools.islice(batches, MAX_CALIBRATION + 1):
        batch = np.asarray(batch[0] if isinstance(batch, tuple | list) else batch)
        images.append(batch)
        count += len(batch) if batch.ndim else 1
        if count > MAX_CALIBRATION:
            raise ValueError(
                f"The calibration stream gave more than {MAX_CALIBRATION} "
                f"examples (it may have no end): pass a finite one of a few "
                f"hundred, e.g. dataset.take(N)."
            )
    if not images:
        raise ValueError("The calibration dataset is empty: pass some images.")
    try:
        return np.concatenate(images)
    except ValueError as error:
        raise ValueError(
            f"The calibration batches differ in shape ({error}); every batch "
            f"must hold images of the model's input size."
        ) from None


def _checked_images(images, input_shape):
    images = np.asarray(images)
    if images.dtype.kind not in "biuf":
        raise ValueError(
            f"Calibration images must be numbers (uint8 or float arrays). "
            f"Received dtype {images.dtype}."
        )
    images = images.astype("float32")
    wanted = tuple(input_shape[1:])
    fits = images.ndim == len(wanted) + 1 and all(
        w is None or w == g for w, g in zip(wanted, images.shape[1:], strict=True)
    )
    if not fits or len(images) == 0:
        raise ValueError(
            f"Calibration images of shape {images.shape} do not fit the model's "
            f"input {(None, *wanted)}: they must be at least one image of its "
            f"size with {wanted[-1]} channels. Calibrate with the dataset the "
            f"model was trained on."
        )
    if len(images) > MAX_CALIBRATION:
        raise ValueError(
            f"{len(images)} calibration images; pass at most {MAX_CALIBRATION} "
            f"(a few hundred settle the ranges)."
        )
    bad = ~np.isfinite(images)
    if bad.any():
        which = np.flatnonzero(bad.reshape(len(images), -1).any(axis=1))
        raise ValueError(
            f"{len(which)} calibration image(s) hold NaN or infinite values "
            f"(the first: index {which[0]}); activation ranges need finite "
            f"images. Remove them or fix their preprocessing."
        )
    return images


def _dataset_images(text, data_dir, download):
    from keras_igc import data

    name, count = parse_calibration(text)
    if name not in data.DATASETS:
        raise ValueError(
            f"Unknown calibration dataset {name!r} (from {text!r}). Choose one "
            f"of {sorted(data.DATASETS)}, optionally with ':N' examples."
        )
    return data.first_images(name, "train", count, data_dir=data_dir, download=download)
