"""The one exception type that the command line turns into a clear message and a non-zero exit.

Raise `UserError` for anything a user can fix (bad path, unknown name, malformed file, overflow):
the message names the problem and the way out. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input; `str(err)` names it and says how to fix it."""

    exit_code = 2
