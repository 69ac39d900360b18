"""A training run's folder: nothing half-written, nothing lost, one run at a time.

Layout of `output_dir`:

    run.lock             the process training into it (removed at the end)
    backup/step-NNNNNNNNN/   the newest two resume points, after that many
                         steps: weights and optimizer, random generators,
                         the epoch's metric totals, the data stream position
    checkpoints/epoch-NNN.keras
    history.csv          one row per finished epoch, epochs counted from 1
    curves.png
    model.keras          the final model
    FINISHED             written last, after model.keras loads back

The package's modules, one job each: `files` (writing atomically), `lock`
(one run per folder), `backups` (the resume points and the callback that
writes and restores them), `recorder` (checkpoints, history and plot per
epoch), `folder` (the layout, settling the files after a kill, finishing).

Every file goes to a temporary name beside its target and is renamed into
place (`atomic_path`), so a kill leaves either the old file or the new one. At
the end of an epoch the checkpoint and a pending history row are written, then
the backup, then the row joins `history.csv`: a rerun resumes from the backup,
commits a pending row whose epoch the backup holds, and drops the files of an
epoch it does not hold (that epoch is trained again; the output says so).
Backups are also taken inside epochs (`RunBackup`'s `every`); each one is a
folder renamed into place, so the newest whole one is the resume point. The
one before it is kept too: if the newest is damaged later, the run resumes
from the previous one and says so.
"""

from keras_igc.runs.backups import (
    BACKUP_SECONDS,
    SNAPSHOT,
    STATE,
    WEIGHTS,
    Backups,
    RunBackup,
    Snapshot,
)
from keras_igc.runs.files import PARTIAL, atomic_path, process_alive, remove, write_text
from keras_igc.runs.folder import RunFolder
from keras_igc.runs.lock import RunLock
from keras_igc.runs.recorder import RunRecorder

__all__ = [
    "BACKUP_SECONDS",
    "PARTIAL",
    "SNAPSHOT",
    "STATE",
    "WEIGHTS",
    "Backups",
    "RunBackup",
    "RunFolder",
    "RunLock",
    "RunRecorder",
    "Snapshot",
    "atomic_path",
    "process_alive",
    "remove",
    "write_text",
]
