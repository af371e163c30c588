"""The one error family of sirst5k: a problem the user can fix, said in one line.

Every library error a user can cause (a missing or damaged file, a bad option, an existing
output) derives from `SirstError`; the CLI turns exactly these into a one-line message and a
non-zero exit. Anything else is a bug and keeps its traceback.
"""


class SirstError(Exception):
    """Bad input or set-up a user can fix; str(e) names the file or option and the fix."""


class UserError(SirstError):
    """Bad source data or synthesis options."""


class StoreError(SirstError):
    """A store that is missing, not a SIRST-5K store, of another schema, or damaged."""


class CheckpointError(SirstError):
    """A checkpoint that is missing, not a sirst5k checkpoint, damaged or incompatible."""


class TrainError(SirstError):
    """A training set-up a user can fix (bad option, existing run, ...)."""


def skipped_reason(error: Exception) -> str:
    """str(error) for the list of skipped files, without its advice to pass --skip-bad (the
    flag that is skipping it)."""
    head, _, advice = str(error).rpartition("; ")
    return head if head and "--skip-bad" in advice else str(error)
