"""The request guard: caps on the bytes actually read, and the API key checked before any body is read.

Pure ASGI, outside FastAPI's routing: FastAPI reads (and buffers) a JSON body before it runs a route's
dependencies, so a check in the route or in `current_tenant` would come after the damage. Here an
unauthenticated request to a protected path is answered 401 before a byte of its body is read, and
every body, chunked or not, is counted as it arrives and cut off at its limit with a 413.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import authenticate
from .errors import ApiError, error_response

# Room for the multipart envelope and form fields around an uploaded file itself.
MULTIPART_OVERHEAD = 64 * 1024
# Paths whose every request needs an API key. Others (probes, metrics, a dashboard's static files or
# sign-in form) pass through; their routes decide.
PROTECTED_PREFIXES = ("/jobs", "/datasets", "/sweeps", "/webhooks")
UPLOAD_PREFIXES = ("/datasets",)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


def _protected(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PROTECTED_PREFIXES)


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp, upload_limit: int, body_limit: int):
        self.app = app
        self.upload_limit = upload_limit
        self.body_limit = body_limit

    def limit_for(self, path: str) -> tuple[int, int]:
        """(bytes allowed on the wire, limit to report)."""
        if any(path == p or path.startswith(p + "/") for p in UPLOAD_PREFIXES):
            return self.upload_limit + MULTIPART_OVERHEAD, self.upload_limit
        return self.body_limit, self.body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        query = scope.get("query_string", b"").lower()
        if "\x00" in path or b"%00" in query or b"\x00" in query:
            await error_response(400, "bad_request", "the URL contains a NUL byte")(scope, receive, send)
            return
        headers = Headers(scope=scope)
        allowed, shown = self.limit_for(path)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > allowed):
            status = 400 if not length.isdigit() else 413
            code = "bad_request" if status == 400 else "payload_too_large"
            message = "invalid Content-Length" if status == 400 else \
                f"request body exceeds the limit of {shown} bytes"
            await error_response(status, code, message, {"Connection": "close"})(scope, receive, send)
            return
        if _protected(path) and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            try:
                principal = await authenticate(scope["app"], headers.get("authorization", ""))
            except ApiError as exc:
                headers_out = {**(exc.headers or {}), "Connection": "close"}
                await error_response(exc.status, exc.code, exc.message, headers_out)(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal

        received = 0
        overflowed = False

        async def counted() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > allowed:
                    overflowed = True
                    raise BodyTooLarge(shown)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if overflowed and not started:
                # Whatever the app answers once its body was cut off is about a truncated body (FastAPI
                # turns a multipart parser's failure into "400 error parsing the body", depending on
                # where the cut fell): the answer is the 413 below, always.
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except Exception:
            if not overflowed or started:
                raise
        if overflowed and not started:
            await error_response(413, "payload_too_large",
                                 f"request body exceeds the limit of {shown} bytes",
                                 {"Connection": "close"})(scope, receive, send)
