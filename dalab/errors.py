"""Errors dalab raises for bad input; the CLI prints them without a traceback."""


class DalabError(Exception):
    """Base class of errors caused by the user's input, data or environment."""


class DataError(DalabError, ValueError):
    """A data file is missing, corrupt or of the wrong form; the message names the file."""


class ConfigError(DalabError, ValueError):
    """A setting has a bad value; the message names the setting, the value and the choices."""


class WriteError(DalabError, OSError):
    """A file or folder cannot be written (no permission, a file in the way, a full disk);
    the message names the path. Nothing half-written is left behind."""


class BusyError(DalabError):
    """Another process holds the lock of a folder dalab wants to write."""
