"""One training run per folder: a lock file naming the process that holds it."""

import contextlib
import json
import os
import socket

from keras_igc.runs.files import process_alive


class RunLock:
    """The lock file of a run folder (`run.lock`): the process id and host
    of the run training into it. A lock whose process is gone (killed, or
    crashed) is stale: it is removed, and the output says so.

    Args:
        path: the lock file.
        root: the run folder, for messages.
        announce: prints what the lock does on its own (removing a stale one).
    """

    def __init__(self, path, root, announce=print):
        self.path, self.root, self.announce = path, root, announce

    def acquire(self):
        """Take the run's lock, or refuse: another process trains here."""
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self.holder()
                if holder is not None:
                    raise ValueError(
                        f"{self.root!r} is in use by another training run (process "
                        f"{holder['pid']} on {holder['host']}). Wait for it to end, "
                        f"or train into another output folder."
                    ) from None
                self.announce(
                    f"keras-igc: removing the stale lock of a run that died "
                    f"({self.path})"
                )
                os.remove(self.path)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(record)
            return
        raise ValueError(f"Could not lock {self.path!r}; remove it by hand.")

    def holder(self):
        """The live process holding the lock, or None if it is stale."""
        try:
            with open(self.path) as f:
                holder = json.load(f)
        except (OSError, ValueError):
            return None  # a lock written halfway: its writer died
        if holder.get("host") != socket.gethostname():
            return holder  # cannot tell: assume it is alive
        return holder if process_alive(int(holder["pid"])) else None

    def release(self):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
