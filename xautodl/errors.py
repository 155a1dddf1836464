"""User-facing errors.

Every problem a user can fix (bad path, bad arch string, missing data, bad flag) raises a subclass of
`XAutoDLError` whose message says what was wrong and how to fix it. Entry points catch it, print the message
without a traceback and exit with status 1 (see `xautodl.runtime.cli.main_guard`).
"""


class XAutoDLError(Exception):
    """Base class of errors with a message meant for the user."""


class ConfigError(XAutoDLError):
    """A config file is missing or malformed."""


class DataError(XAutoDLError):
    """A dataset is missing, incomplete or corrupt."""


class ArchError(XAutoDLError):
    """An architecture string or genotype is invalid."""


class CheckpointError(XAutoDLError):
    """A checkpoint is missing, corrupt, unsafe or from another kind of run."""


class TrainingError(XAutoDLError):
    """Training diverged (NaN / inf loss) or cannot go on."""
