"""Published weights files: one registry, one download.

Each `PublishedFile` names a file a model store publishes (a zip holding one
weights file), where it is and the SHA-1 of the file inside. `fetch(name)`
returns the checked file in Keras' cache folder, downloading it once:

- the cache folder is Keras' own (`cache_folder()`): `$KERAS_HOME/models`,
  else `~/.keras/models` (`/tmp/.keras` when the home folder is not
  writable), as Keras 3 resolves it;
- the download has a timeout, and a failure names the URL and the file to
  pass instead on a machine without internet access;
- a cached file whose SHA-1 is not the published one is replaced by a fresh
  download, never used; a download whose SHA-1 differs is removed and
  named.

Each network declares its files once, beside its builder (igcv3.py: the
`pytorchcv` helper here names a pytorchcv file), and its `weights="imagenet"`
looks them up by name; a project can add its own with `register`.

Example:

>>> from keras_igc.applications.weights import published
>>> published.get("igcv3_wd2").file
'igcv3_wd2-1732-8c504f44.pth'
"""

import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile

# Seconds a connection or a read may wait for the server.
DEFAULT_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class PublishedFile:
    """A weights file as its model store publishes it.

    Attributes:
        name: the registry key, e.g. `"igcv3_w1"`.
        url: where the zip holding the file is served.
        file: the file's name inside the zip, and in the cache folder.
        sha1: the SHA-1 of that file (not of the zip).
    """

    name: str
    url: str
    file: str
    sha1: str


_REGISTRY = {}


def register(entry, *, replace=False):
    """Add a `PublishedFile` to the registry (`replace=True` to change one)."""
    if not isinstance(entry, PublishedFile):
        raise ValueError(
            f"register() takes a PublishedFile(name, url, file, sha1). "
            f"Received: {entry!r}."
        )
    if len(entry.sha1) != 40 or any(c not in "0123456789abcdef" for c in entry.sha1):
        raise ValueError(
            f"PublishedFile {entry.name!r}: `sha1` must be 40 lower-case hex "
            f"digits. Received: sha1={entry.sha1!r}."
        )
    if entry.name in _REGISTRY and not replace and _REGISTRY[entry.name] != entry:
        raise ValueError(
            f"A published file named {entry.name!r} is registered already "
            f"({_REGISTRY[entry.name].url}); pass replace=True to change it."
        )
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name):
    """Remove a registry entry (what `register` added)."""
    _REGISTRY.pop(get(name).name)


def get(name):
    """The registered `PublishedFile` named `name`, or a ValueError listing
    the names."""
    if name not in _REGISTRY:
        raise ValueError(
            f"No published file named {name!r}. Registered: {sorted(_REGISTRY)}."
        )
    return _REGISTRY[name]


def names():
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def cache_folder(cache_dir=None):
    """Where downloads are kept: `cache_dir/models`, else Keras' cache
    folder's: `$KERAS_HOME/models`, or `~/.keras/models` (`/tmp/.keras`
    when the home folder is not writable), as Keras 3 resolves it."""
    if cache_dir is None:
        cache_dir = os.environ.get("KERAS_HOME")
    if cache_dir is None:
        home = os.path.expanduser("~")
        cache_dir = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    return os.path.join(os.path.expanduser(cache_dir), "models")


def fetch(name, *, cache_dir=None, timeout=DEFAULT_TIMEOUT):
    """The path of the published file `name`, from the cache folder or
    downloaded into it, its SHA-1 checked.

    Args:
        name: a registered name (`names()`).
        cache_dir: a folder instead of Keras' (`cache_folder`).
        timeout: seconds a connection or a read may wait.
    """
    entry = get(name)
    folder = cache_folder(cache_dir)
    target = os.path.join(folder, entry.file)
    if os.path.isfile(target):
        if sha1(target) == entry.sha1:
            return target
        # A damaged or replaced file is never used: fetched again below.
        os.remove(target)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"Cannot create the cache folder {folder!r} ({error.strerror}). Set "
            f"KERAS_HOME to a writable folder."
        ) from None
    # Downloaded and unpacked beside the target, renamed when checked: an
    # interrupted download leaves no file that a later call could take.
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
        archive = os.path.join(scratch, "download.zip")
        _download(entry, archive, timeout, folder)
        unpacked = _unpack(entry, archive, scratch)
        found = sha1(unpacked)
        if found != entry.sha1:
            raise ValueError(
                f"{entry.file} from {entry.url} has SHA-1 {found}, not the "
                f"published {entry.sha1}: the download is damaged or the file "
                f"was replaced. Nothing was kept; try again."
            )
        os.replace(unpacked, target)
    return target


def _download(entry, path, timeout, folder):
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout) as response:
            with open(path, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise ValueError(
            f"Could not download {entry.url} ({type(error).__name__}: {reason}; "
            f"timeout {timeout:g} s). On a machine without internet access, "
            f"download it elsewhere, unzip it and pass weights=PATH of "
            f"{entry.file}, or put {entry.file} in {folder!r}."
        ) from None


def _unpack(entry, archive, folder):
    if not zipfile.is_zipfile(archive):
        raise ValueError(
            f"{entry.url} did not send a zip archive ({os.path.getsize(archive)} "
            f"bytes): the download was cut short or the address serves something "
            f"else. Nothing was kept; try again."
        )
    with zipfile.ZipFile(archive) as bundle:
        if entry.file not in bundle.namelist():
            raise ValueError(
                f"{entry.url} does not hold {entry.file} (it holds "
                f"{bundle.namelist()[:3]}); nothing was kept."
            )
        path = os.path.join(folder, entry.file)
        with open(path, "wb") as out, bundle.open(entry.file) as member:
            shutil.copyfileobj(member, out, 1 << 20)
    return path


def sha1(path):
    """The SHA-1 of a file, as hex digits."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pytorchcv(model, error, sha1, release):
    """The `PublishedFile` of a weights file of pytorchcv's model store: its
    name holds the top-1 error (1e-4 units) and the SHA-1's first 8 digits;
    one zip per file, in imgclsmob's `release` on GitHub."""
    file = f"{model}-{error}-{sha1[:8]}.pth"
    base = "https://github.com/osmr/imgclsmob/releases/download"
    return PublishedFile(model, f"{base}/{release}/{file}.zip", file, sha1)
