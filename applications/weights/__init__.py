"""Weights from every source a network takes, through one call.

A network declares its sources once, beside its builder: a `Sources` of the
checkpoint formats it reads and, for `weights="imagenet"`, the published
files by width. Every builder's `weights=` goes through `Sources.resolve`
(before any layer is made: a bad argument costs nothing) and `Sources.load`;
`keras-igc convert` and the keras-hub presets read a checkpoint with the
same readers (`checkpoints.from_checkpoint`).

One file per format it reads:

- `keras_files.py`: Keras weights files (`model.save_weights`, `.keras`),
  which every network takes;
- `mxnet.py`: MXNet NDArray lists (`.params`): the IGC authors' release, and
  the reader of the IGCV3 authors' checkpoint;
- `pytorch.py`: PyTorch state_dicts (`.pth`): the MSGC release and
  torchvision's, into the MSGC hosts;
- `pytorchcv.py`: pytorchcv's IGCV3 state_dicts (and the IGCV3 authors'
  MXNet names, which map onto the same layers);
- `published.py`: files a model store publishes (URL, SHA-1), downloaded
  once into Keras' cache folder;
- `checkpoints.py`: a checkpoint to the network it holds.

Every reader checks every array before it sets any: a file that does not
fit loads nothing, and the error names it.
"""

import dataclasses
import os

from keras_igc.applications.weights import keras_files, published


@dataclasses.dataclass(frozen=True)
class Format:
    """A checkpoint format a network reads.

    Attributes:
        suffixes: the file endings it is known by (`.params`, `.pth`).
        description: what the file is, for messages ("a checkpoint of the IGC
            authors' MXNet release ('*.params')").
        load: `load(model, source, **context)` sets the model's weights from a
            file (or a dict of arrays, with `dicts`), checking all first.
        dicts: whether `load` also takes a dict of arrays (a state_dict).
    """

    suffixes: tuple
    description: str
    load: object
    dicts: bool = False

    def reads(self, source):
        if isinstance(source, dict):
            return self.dicts
        return os.fspath(source).endswith(self.suffixes)


@dataclasses.dataclass(frozen=True)
class Sources:
    """The weights one network takes: Keras weights files always, the
    checkpoint `formats`, and `published` files for `weights="imagenet"`.

    Attributes:
        network: the network's name, for messages.
        formats: the `Format`s of its checkpoints.
        published: `{key: published name}` (`published.get`): the ImageNet
            weights per variant (IGCV3's width `alpha`); empty: none.
        published_from: who publishes them, for messages.
        key_name: the builder argument that picks the published variant.
    """

    network: str
    formats: tuple = ()
    published: dict = dataclasses.field(default_factory=dict)
    published_from: str = ""
    key_name: str = "variant"

    def resolve(self, weights, key=None, include_top=True, classes=1000):
        """The source `weights` names (a file path, a dict where a format
        takes one, the downloaded file for `"imagenet"`), or None; else a
        ValueError that says what `weights` takes.

        `key`: the variant whose published file `"imagenet"` means;
        `include_top`, `classes`: the builder's (published weights carry
        ImageNet's 1000 classes).
        """
        if weights is None:
            return None
        if isinstance(weights, str) and weights == "imagenet" and self.published:
            if key not in self.published:
                raise ValueError(
                    f"weights='imagenet' exists for {self.key_name} in "
                    f"{sorted(self.published)} ({self.published_from}'s "
                    f"published widths). Received: {self.key_name}={key!r}."
                )
            if include_top and classes != 1000:
                raise ValueError(
                    "weights='imagenet' with include_top=True needs classes=1000 "
                    f"(the ImageNet classifier). Received: classes={classes!r}; "
                    "pass include_top=False for features to train a head on."
                )
            return published.fetch(self.published[key])
        if isinstance(weights, dict) and any(f.dicts for f in self.formats):
            return weights
        if isinstance(weights, str | os.PathLike) and os.path.isfile(weights):
            return os.fspath(weights)
        raise ValueError(self._takes(weights))

    def load(self, model, source, **context):
        """Set `model`'s weights from `source` (`resolve`'s): the format that
        reads it, else a Keras weights file. `context`: what the format's
        reader needs besides (IGCV3's `alpha`)."""
        for fmt in self.formats:
            if fmt.reads(source):
                return fmt.load(model, source, **context)
        return keras_files.load(model, os.fspath(source))

    def _takes(self, weights):
        kinds = ["`None` (random initialization)"]
        if self.published:
            kinds.append(
                f"'imagenet' ({self.published_from}'s published weights, downloaded)"
            )
        kinds.append(
            "the path to a weights file saved with `model.save_weights()` (e.g. "
            "'model.weights.h5')"
        )
        kinds += [f"the path of {fmt.description}" for fmt in self.formats]
        download = "" if self.published else " Nothing is downloaded."
        return (
            f"The `weights` argument of {self.network} should be either "
            f"{', '.join(kinds[:-1])}, or {kinds[-1]}.{download} Received: "
            f"weights={weights!r}."
        )
