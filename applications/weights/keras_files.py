"""Keras weights files: `model.save_weights` (`.weights.h5`) and `.keras`
archives, which every network takes."""

import warnings

from keras_igc.saving import check_keras_archive

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def load(model, path):
    """`model.load_weights(path)` with errors that name the file and the fix:
    a file that is no weights file, or the weights of another network."""
    with open(path, "rb") as f:
        head = f.read(8)
    if path.endswith(".h5") and head != HDF5_SIGNATURE:
        raise ValueError(
            f"{path!r} is not an HDF5 weights file (saved with "
            f"model.save_weights('name.weights.h5')); it starts with {head!r}."
        )
    if path.endswith(".keras"):
        check_keras_archive(path)
    try:
        with warnings.catch_warnings():
            # Keras warns per layer before it fails; the error below says it once.
            warnings.simplefilter("ignore")
            return model.load_weights(path)
    except ValueError as error:
        raise ValueError(
            f"The weights in {path!r} do not fit {model.name!r} (the file was "
            f"saved from another network, or with other classes, width or "
            f"input shape): {str(error).splitlines()[0][:200]}"
        ) from None
