"""Errors a caller can act on. Each carries a stable ``code`` so a service can map it to HTTP."""

from __future__ import annotations


class XTCError(Exception):
    code = "xtc_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigError(XTCError):
    """The request itself is invalid (unknown task, bad layer list, bad bit width...)."""

    code = "invalid_config"


class ModelLoadError(XTCError):
    """The model cannot be resolved, downloaded or is not a supported encoder."""

    code = "model_load_failed"


class DataError(XTCError):
    """A data file is unusable. Names the file, the 1-based line (when known) and the problem."""

    code = "invalid_data"

    def __init__(self, path: str, problem: str, line: int | None = None):
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


class CheckpointError(XTCError):
    """A compressed checkpoint folder is missing files or is not in our format."""

    code = "invalid_checkpoint"


class Cancelled(XTCError):
    """Raised when the caller's should-stop callback asks the pipeline to stop."""

    code = "cancelled"
