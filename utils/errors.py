"""How a command ends early: a mistake the user can fix, a diverged loss, a stop by signal.

`train.py` and the scripts turn each into one line on stderr and an exit status, no traceback, through
`exit_status`.
"""

import sys
from collections.abc import Callable


class UserInputError(Exception):
    """Raised for bad input; the message says what is wrong and how to fix it, in one line."""


class TrainingDiverged(Exception):
    """A loss became NaN or inf; the message names the loss and the step. `train.py` exits with status 3."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived (once training runs, after a checkpoint). `train.py` exits with 128 + N.

    A BaseException, as KeyboardInterrupt is: the signal handler raises it wherever the program happens to be,
    and a handler for `Exception` there must not swallow it or turn it into another error. gymnasium-robotics'
    import, which runs while the Fetch data is being made, wraps a block in `except Exception: pass`: a SIGTERM
    landing there was lost, and the run failed later with a traceback (exit 1) instead of stopping."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


def interruption_behind(error: BaseException) -> Interrupted | None:
    """The Interrupted behind `error`, when a library turned the stop into an error of its own: a signal that
    lands while a compiled module initialises surfaces as "ImportError: initialization failed", which the
    importing library may wrap again (gymnasium makes MuJoCo's a DependencyNotInstalled); each keeps the error
    before it as its cause."""
    while error is not None and not isinstance(error, Interrupted):
        error = error.__cause__ or error.__context__
    return error


def exit_status(command: Callable[[], None]) -> int:
    """Run a command's work: 0 when it succeeds; else one line on stderr and 2 for a UserInputError, 3 for
    TrainingDiverged, 128 + N for a stop by signal N. Any other error goes on, traceback and all. A stop comes
    first: whatever a library made of it, it is still a stop."""
    try:
        command()
    except (Exception, Interrupted) as error:
        if (stop := interruption_behind(error)) is not None:
            print(str(stop), file=sys.stderr)
            return 128 + stop.signal_number
        if not isinstance(error, (UserInputError, TrainingDiverged)):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, UserInputError) else 3
    return 0
