"""The one exception type for a user's mistake: entry points print its message as one line."""


class ZooError(Exception):
    """A bad config value, file, checkpoint or model name: reported as one line, no traceback."""
