"""The error every step of starting or stopping the server raises, with the fix in its message."""


class ServerError(RuntimeError):
    """The server could not start or stop; the message says what and how to fix it."""
