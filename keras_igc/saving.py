"""Loading keras_igc's `.keras` files: every class they name registered
first, and errors that say what is wrong with the file."""


def register_serializables():
    """Import the modules whose classes keras_igc's `.keras` files name,
    which registers the classes with Keras: the layers, the optimizer and
    schedules (a file saved with its compile state: every model `train`
    writes), MSGC's model class and the quantization-aware layers. Keras
    imports no third-party module to find a class, so each must be imported
    before loading."""
    import keras_igc.layers  # noqa: F401
    import keras_igc.msgc  # noqa: F401
    import keras_igc.optimizers  # noqa: F401
    import keras_igc.quantization  # noqa: F401
    import keras_igc.traced_model  # noqa: F401


def load_keras_model(path, **kwargs):
    """`keras.saving.load_model(path)` with keras_igc's classes registered
    (`register_serializables`) and errors that say what is wrong with the
    file (missing, not a `.keras` archive, truncated)."""
    import os
    import zipfile

    import keras

    register_serializables()

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"No model file at {path!r}; pass a saved .keras file.")
    if not path.endswith(".keras"):
        raise ValueError(
            f"{path!r} is not a .keras file; pass a model saved with "
            f"model.save('name.keras')."
        )
    check_keras_archive(path)
    try:
        return keras.saving.load_model(path, **kwargs)
    except (OSError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(
            f"{path!r} could not be read as a Keras model ({type(error).__name__}: "
            f"{error}); it may be truncated."
        ) from error


def check_keras_archive(path):
    """A ValueError naming `path` if it is not a whole `.keras` archive (a zip),
    e.g. one whose save was interrupted."""
    import os
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a complete .keras archive ({os.path.getsize(path)} "
            f"bytes; a .keras file is a zip): the save that wrote it was probably "
            f"interrupted. Use another checkpoint or save the model again."
        )
