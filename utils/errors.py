"""The one exception type for mistakes a user can fix (bad flags, missing or broken data).

`train.py` prints its message as a single line on stderr and exits with status 2, no traceback; the scripts
do the same through `exit_status`.
"""

import sys
from collections.abc import Callable


class UserInputError(Exception):
    """Raised for bad input; the message says what is wrong and how to fix it, in one line."""


class TrainingDiverged(Exception):
    """A loss became NaN or inf; the message names the loss and the step. `train.py` exits with status 3."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived; a checkpoint was written. `train.py` exits with 128 + the signal number.

    A BaseException, as KeyboardInterrupt is: the signal handler raises it wherever the program happens to be,
    and a handler for `Exception` there must not swallow it or turn it into another error. gymnasium-robotics'
    import, which runs while the Fetch data is being made, wraps a block in `except Exception: pass`: a SIGTERM
    landing there was lost, and the run failed later with a traceback (exit 1) instead of stopping."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


def exit_status(command: Callable[[], None]) -> int:
    """Run a script's work: 0 when it succeeds, 2 with the UserInputError's one-line message on stderr."""
    try:
        command()
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
