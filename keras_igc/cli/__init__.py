"""The `keras-igc` command: train, evaluate and inspect IGC networks.

One module per command, listed in `COMMANDS`: each has `add(commands)`, which
adds its parser (and sets `run`), and `run(args)`. `arguments` holds the
arguments several share. Parsing imports neither Keras nor TensorFlow
(`--help` and typos answer at once); a command imports what it runs.
"""

import argparse
import sys

from keras_igc.cli import convert, evaluate, export, info, predict, train, tune
from keras_igc.cli.arguments import DATASET_NAMES
from keras_igc.cli.export import QUANTIZE_SCHEMES
from keras_igc.cli.predict import NORMALIZATION_NAMES

# In the order `keras-igc --help` lists them.
COMMANDS = (train, evaluate, export, convert, predict, tune, info)

__all__ = [
    "COMMANDS",
    "DATASET_NAMES",
    "NORMALIZATION_NAMES",
    "QUANTIZE_SCHEMES",
    "main",
]


def _parser():
    parser = argparse.ArgumentParser(
        prog="keras-igc",
        description="Train, evaluate and inspect interleaved group convolution "
        "networks (keras_igc).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add(commands)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    _start_keras()
    try:
        return args.run(args) or 0
    except (ValueError, OSError, ImportError) as error:
        # ReleaseWeightsError is a ValueError; OSError: a path that cannot be
        # read or written (its message names it).
        print(f"keras-igc {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Every command writes its files atomically: nothing half-written is
        # left, and `train` resumes from its last backup.
        print(f"keras-igc {args.command}: interrupted", file=sys.stderr)
        return 130


def _start_keras():
    """Import Keras and TensorFlow with their start-up logs held back (shown
    only if the import fails), then the package (which registers its layers).
    `KERAS_IGC_VERBOSE=1` shows them."""
    import importlib
    import os
    import tempfile

    def load():
        # Registers the layers, optimizers and models for keras.saving.load_model.
        importlib.import_module("keras_igc.saving").register_serializables()

    if os.environ.get("KERAS_IGC_VERBOSE") or "tensorflow" in sys.modules:
        load()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import keras  # noqa: F401  (starts the backend)

            load()
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
