"""sirst5k: synthesize the SIRST-5K training store, train and evaluate IRSTD detectors."""

__version__ = "0.1.0"


class UserError(ValueError):
    """Bad input a user can fix; the CLI prints it as one line and exits non-zero."""
