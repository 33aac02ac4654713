"""Client failures as one-line messages with exit codes a script can switch on."""

from __future__ import annotations

# 0: the command (or the waited-for job) succeeded.
JOB_FAILED = 1
USAGE = 2  # bad options or a request the server rejected as invalid (4xx)
AUTH = 3  # missing, invalid or revoked API key
NOT_FOUND = 4  # no such job/artifact for this key's tenant
UNAVAILABLE = 5  # server unreachable, timed out or 5xx
JOB_CANCELLED = 6
INTEGRITY = 7  # a download's sha256 did not match the server's listing


class ClientError(Exception):
    def __init__(self, message: str, exit_code: int, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code  # the server's stable error code, when it sent one
