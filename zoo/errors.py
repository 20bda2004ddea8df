"""The one exception type for a user's mistake: entry points print its message as one line."""


class ZooError(Exception):
    """A bad config value, file, checkpoint or model name: reported as one line, no traceback."""


class RunStopped(Exception):
    """A run stopped on request (SIGTERM, Ctrl-C) after saving a checkpoint; resuming continues
    it.

    Entry points report it as one line and exit with `exit_code`, 128 + the signal (143 for
    SIGTERM, 130 for Ctrl-C), so a scheduler sees that the work is not finished.
    """

    exit_code = 143
