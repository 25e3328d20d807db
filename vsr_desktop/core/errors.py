"""One exception family for the core layer.

Every error carries a one-line message for the user and a hint saying what to do next,
so the CLI and the GUI can show it without knowing where it came from.
"""

from __future__ import annotations


class VsrError(Exception):
    """Base of every error the core raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def user_message(self) -> str:
        """The one line shown to the user: what went wrong, then what to do."""
        return f"{self.message} — {self.hint}" if self.hint else self.message


class InputError(VsrError):
    """The user asked for something impossible (bad path, output equals input...)."""

    exit_code = 2


class MediaError(VsrError):
    """A file could not be probed, decoded, encoded or muxed."""

    exit_code = 3


class DamagedInputError(MediaError):
    """The source has frames that cannot be read or decoded (and --allow-damaged was not
    given): its own exit code, so scripts can tell it from a file that is not a video."""

    exit_code = 9


class ModelError(VsrError):
    """A model is unknown, missing, corrupt, unsafe or failed its checksum."""

    exit_code = 4


class EngineError(VsrError):
    """Inference failed (device unavailable, out of memory even when tiled)."""

    exit_code = 5


class JobError(VsrError):
    """A job could not be planned, run, resumed or finished."""

    exit_code = 6


class CancelledError(VsrError):
    """The user cancelled; not a failure, but the work stopped."""

    exit_code = 130


class DiskFullError(VsrError):
    """Writing failed because the disk is full."""

    exit_code = 7
