"""The one exception type for a user's mistake: entry points print its message as one line."""


class ZooError(Exception):
    """A bad config value, file, checkpoint or model name: reported as one line, no traceback."""


class Diverged(ZooError):
    """A loss or the parameters became non-finite: a sweep records the job as diverged."""


class RunStopped(Exception):
    """A run stopped on request (SIGTERM) after saving a checkpoint; resuming continues it.

    Entry points report it as one line and exit with 143 (128 + SIGTERM), so a scheduler sees
    that the work is not finished.
    """

    exit_code = 143
