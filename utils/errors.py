"""The one exception type for mistakes a user can fix (bad flags, missing or broken data).

`train.py` prints its message as a single line on stderr and exits with status 2, no traceback.
"""


class UserInputError(Exception):
    """Raised for bad input; the message says what is wrong and how to fix it, in one line."""


class TrainingDiverged(Exception):
    """A loss became NaN or inf; the message names the loss and the step. `train.py` exits with status 3."""


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived; a checkpoint was written. `train.py` exits with 128 + the signal number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number
