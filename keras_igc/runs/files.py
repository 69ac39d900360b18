"""Writing a run's files so that a kill leaves the old file or the new one."""

import contextlib
import os
import shutil

PARTIAL = ".partial"  # in the name of a file being written


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renamed onto it on success.

    The temporary name keeps the file's extension (`x.keras` ->
    `x.partial.keras`) so writers that dispatch on it still work.
    """
    root, extension = os.path.splitext(path)
    if root.endswith(".weights"):  # Keras' double extension
        root, extension = root[: -len(".weights")], ".weights" + extension
    temporary = f"{root}{PARTIAL}{extension}"
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def process_alive(pid):
    """Whether a process `pid` runs on this machine (one of another user's
    counts: it cannot be signalled, but it is there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text(path, text):
    """Write `text` to `path` atomically (`atomic_path`), synced to disk."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def remove(path):
    """A file, or a folder with everything in it."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
