"""Errors a user can act on. Each message names the file, line or field and says how to fix it."""

from __future__ import annotations


class MedloraError(Exception):
    """Base class: the CLI prints these as one clean message instead of a traceback."""


class ConfigError(MedloraError):
    """A config file or override is invalid."""


class DataFormatError(MedloraError):
    """A data source holds a malformed record.

    ``location`` is ``file:line`` (JSONL), ``file[record N]`` (JSON array) or the XML file path.
    """

    def __init__(self, location: str, problem: str, fix: str | None = None) -> None:
        self.location = location
        self.problem = problem
        self.fix = fix
        message = f"{location}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class ModelNotAvailableError(MedloraError):
    """A base model or adapter cannot be found or fetched."""


class AdapterMismatchError(MedloraError):
    """An adapter was trained on a different base model than the one loaded."""
