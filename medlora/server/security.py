"""What the server checks before a request reaches the model: size, content type, host, and response headers.

This is a plain ASGI middleware rather than FastAPI dependencies because a body limit has to act before the
body is parsed: a 2 MB message must be answered 413 in milliseconds, not after pydantic built it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
# The web page loads only its own script and style; nothing may frame it.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
]
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# A body somewhat over the limit is read and dropped so the client sees the 413 instead of a reset
# connection; beyond this the connection is answered at once and closed.
_DRAIN_FACTOR = 64
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"():,;]+/)*([^\s'\"():,;/]+)")


def scrub_paths(text: str) -> str:
    """Replace absolute paths in a client-facing message by their last component.

    Error messages are written for an operator at the terminal; over HTTP they must not reveal the server's
    directory layout (or whether a path exists there).
    """
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1), text)


def allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> list[str]:
    """Host header values accepted: localhost, the bound interface, and ``extra`` (``*`` accepts any).

    Checking the Host header stops DNS rebinding: a web page on another site resolving its name to
    127.0.0.1 cannot drive a local bot. A wildcard bind (``0.0.0.0``) accepts this machine's names and
    addresses.
    """
    hosts = list(LOCAL_HOSTS)
    if bind_host in ("0.0.0.0", "::", ""):  # noqa: S104 - recognises a wildcard bind, binds nothing
        hosts += [socket.gethostname(), socket.getfqdn()]
        try:
            import psutil

            for addresses in psutil.net_if_addrs().values():
                hosts += [a.address.split("%")[0] for a in addresses if a.family in (socket.AF_INET, socket.AF_INET6)]
        except Exception as err:  # noqa: BLE001 - fall back to names only
            log.warning("could not list the network addresses for the host check: %s", err)
    else:
        hosts.append(bind_host)
    hosts += list(extra)
    return list(dict.fromkeys(h.lower() for h in hosts if h))


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):  # [v6]:port
        return header[1:header.find("]")] if "]" in header else header
    name, _, port = header.rpartition(":")
    if name and port.isdigit():
        return name
    return header


def _host_allowed(name: str, hosts: list[str]) -> bool:
    if "*" in hosts or name in hosts:
        return True
    for pattern in hosts:
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    try:  # "::1" and "[::1]" and other spellings of one address
        address = ipaddress.ip_address(name)
        return any(_same_address(address, h) for h in hosts)
    except ValueError:
        return False


def _same_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")) == address
    except ValueError:
        return False


def _error_body(status: int, message: str, code: str) -> bytes:
    kind = "invalid_request_error"
    return json.dumps({"error": {"message": message, "type": kind, "code": code, "param": None}}).encode()


class GuardMiddleware:
    """Host check, JSON-only bodies of bounded size, and security headers on every response."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, hosts: list[str]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not _host_allowed(_host_name(headers.get("host", "")), self.hosts):
            await self._reply(send, 400, "this server does not answer for that Host header; add the name to "
                              "service.trusted_hosts (or serve --trusted-host NAME)", "invalid_host")
            return
        if scope.get("method") in _BODY_METHODS:
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            length = headers.get("content-length")
            declared = int(length) if length and length.isdigit() else None
            if declared is not None and declared > self.max_body_bytes * _DRAIN_FACTOR:
                await self._reply(send, 413, self._too_large(declared), "request_too_large", close=True)
                return
            body, size, complete = await self._read_body(receive)
            if size > self.max_body_bytes:
                await self._reply(send, 413, self._too_large(size), "request_too_large", close=not complete)
                return
            if body and content_type != "application/json":
                await self._reply(send, 415, "send the request body as JSON with 'Content-Type: "
                                  "application/json'", "unsupported_media_type")
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, _with_headers(send))

    def _too_large(self, size: int) -> str:
        return (f"the request body is too large ({size} bytes); at most {self.max_body_bytes} bytes are accepted "
                "(service.max_request_bytes): send a shorter question")

    async def _read_body(self, receive: Receive) -> tuple[bytes, int, bool]:
        """Read the body while it is within the limit; past it, count (and drop) up to the drain cap."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", size, False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= self.max_body_bytes:
                chunks.append(chunk)
            elif size > self.max_body_bytes * _DRAIN_FACTOR:
                return b"", size, False
            else:
                chunks.clear()
            if not message.get("more_body", False):
                return b"".join(chunks), size, True

    async def _reply(self, send: Send, status: int, message: str, code: str, *, close: bool = False) -> None:
        body = _error_body(status, message, code)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   *SECURITY_HEADERS]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """Give the app the body already read, then pass through (so it still sees ``http.disconnect``)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = [*message.get("headers", []),
                                  *[(k, v) for k, v in SECURITY_HEADERS if k not in present]]
        await send(message)

    return wrapped


__all__ = ["GuardMiddleware", "SECURITY_HEADERS", "allowed_hosts", "scrub_paths"]
