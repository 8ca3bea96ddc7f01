"""Errors meant for users: one line, naming the input and what is wrong."""

import errno


class UserError(Exception):
    """Bad input from a user; the CLI prints it as one line and exits with code 2."""


class DataError(UserError):
    """A dataset that cannot be read: names the file, the 1-based line and the field."""


class ConfigError(UserError):
    """A training or sweep configuration that cannot be used."""


class StorageFull(OSError):
    """A write the storage had no room for (ENOSPC, EDQUOT): the CLI prints it as one line and exits
    with code 1; nothing was half-written, and the work continues once space is freed. An OSError
    (ENOSPC), so that code which tolerates a failed write tolerates this one."""

    def __init__(self, path: str, detail: str = "no space left on the device") -> None:
        super().__init__(errno.ENOSPC, f"{path}: could not be written ({detail}); nothing was half-written")
        self.path = path
        self.then = "run the command again"  # what continues the work once space is freed

    def __str__(self) -> str:
        return str(self.strerror)


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_no_space(err: BaseException) -> bool:
    """Whether `err` says the storage is full: its errno, or its text (pyarrow's errors, and Tune's,
    which carry the failure as a traceback), or the error it was raised from."""
    if isinstance(err, OSError) and err.errno in NO_SPACE_ERRNOS:
        return True
    if "No space left on device" in str(err) or "Disk quota exceeded" in str(err):
        return True
    cause = err.__cause__ or err.__context__
    return cause is not None and is_no_space(cause)
