"""One exception type for problems the user can fix; the UI and CLI show its message, never a traceback."""


class UserError(ValueError):
    """Bad input or impossible settings. The message names the file or field and what to do."""
