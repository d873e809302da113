"""The errors every ``gmae`` command turns into one line on stderr (no traceback) and an exit code.

``InputError``: bad input (a file, folder or config key), found before expensive work; exit 2.
``RunStopped``: a run that stopped on purpose (e.g. too many non-finite steps); exit 1.
``Unavailable`` / ``MissingDependency``: a CUDA device or an optional package the command needs is missing; exit 2.
Plain ``ValueError`` / missing-file errors from anywhere are also shown as one line (exit 2), and a full disk
as "no space left on device" (exit 1); ``GMAE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations


class GmaeError(Exception):
    """An error whose message says everything the user needs (file or key, and what to do)."""

    exit_code = 2


class InputError(GmaeError, ValueError):
    """Bad input found before any expensive work; the message names the file or key."""


class RunStopped(GmaeError, RuntimeError):
    """A run stopped on purpose; the message says why and what was kept."""

    exit_code = 1


class Unavailable(GmaeError, RuntimeError):
    """The input asks for something this machine lacks (a CUDA device, more GPUs than visible); exit 2."""


class MissingDependency(GmaeError, ImportError):
    """An optional package the command needs is not installed; the message gives the install command; exit 2."""


class UnknownKey(InputError, KeyError):
    """A config override names a key the config does not have (still a KeyError for callers); exit 2."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""
