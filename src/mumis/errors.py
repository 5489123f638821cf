"""The one exception type users see: every message names the problem and the fix."""


class MumisError(ValueError):
    """Bad input or state. The CLI prints the message and exits with status 2; nothing is half-written."""
