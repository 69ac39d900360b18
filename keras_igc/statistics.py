"""Per-channel image statistics, `(mean, std)` on a 0-1 scale: one place for each.

The applications' `preprocess_input` and the `keras_igc.data` pipelines both
normalise with these.
"""

CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100 = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
SVHN = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
# Of the resized training split (tests/test_data.py checks them).
DIGITS = ((0.3054,), (0.3234,))


def _from_255(mean, std):
    return tuple(v / 255 for v in mean), tuple(v / 255 for v in std)


# The IGC release's (`train_imagenet.py`, given there in 0-255 units): its
# checkpoints expect these.
IMAGENET_IGC_RELEASE = _from_255((123.370, 112.757, 99.406), (68.998, 66.093, 68.292))
# torchvision's, which the MSGC release normalises with (`--fb-mean` in the
# IGC release).
IMAGENET_TORCHVISION = _from_255((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))

# Named input normalisations: `applications.preprocess_input(mode=...)` and the
# keras-hub image converters (`keras_igc.hub`) read them from here.
NORMALIZATIONS = {
    "igc-release": IMAGENET_IGC_RELEASE,
    "torch": IMAGENET_TORCHVISION,
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "svhn": SVHN,
}


def check_normalization(normalization):
    """`normalization` if it names one of `NORMALIZATIONS`, else a ValueError."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"`normalization` must be one of {sorted(NORMALIZATIONS)}. Received: "
            f"normalization={normalization!r}."
        )
    return normalization


def scale_and_offset(normalization):
    """`(scale, offset)` per channel such that `x * scale + offset` is
    `(x / 255 - mean) / std` for images in 0-255 (keras-hub's `ImageConverter`
    form) under the named normalisation."""
    mean, std = NORMALIZATIONS[check_normalization(normalization)]
    scale = [1.0 / (255.0 * s) for s in std]
    offset = [-m / s for m, s in zip(mean, std, strict=True)]
    return scale, offset
