"""What the service checks before any route runs: the token-less development server answers
only to loopback names and same-origin writes, and access logs never carry a secret."""

from __future__ import annotations

import logging
import re

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: the Host names a token-less server answers to (any port)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(host: str) -> str:
    """``host`` (a Host header) without its port, lower case: ``[::1]:8000`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class LoopbackOnly:
    """ASGI middleware for a server without a token (``serve --dev``).

    A web page the developer visits can make the browser send requests to 127.0.0.1, and a
    name the attacker controls can be made to resolve to it (DNS rebinding). Without a token
    the browser's checks are the only protection, so: every request must name a loopback
    host (a rebound name does not), and a request that changes state must not come from
    another origin (``Origin`` other than this server's, or ``Sec-Fetch-Site`` other than
    ``same-origin``/``none``): 403. Clients that are not browsers (the CLI, httpx, Label
    Studio's server calling back) send neither header and pass."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        why = None
        if host_name(host) not in LOOPBACK_HOSTS:
            why = (
                f"this server runs without an API token and answers only to a loopback host "
                f"(127.0.0.1, localhost, [::1]); the request named {host!r}"
            )
        elif scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS:
            site, origin = headers.get("sec-fetch-site"), headers.get("origin")
            scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
            if site is not None and site.lower() not in ("same-origin", "none"):
                why = f"cross-site request refused by a server without an API token (Sec-Fetch-Site: {site})"
            elif origin is not None and origin.lower().rstrip("/") != f"{scheme}://{host.lower()}":
                why = f"cross-origin request refused by a server without an API token (Origin: {origin})"
        if why is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await JSONResponse({"detail": why}, status_code=403)(scope, receive, send)


# ---- access logs --------------------------------------------------------------------------
#: the callback secret in /labelstudio/<secret>/..., and the signature of a signed link
_SECRETS = (
    (re.compile(r"(^|[\s\"'])(/labelstudio/)(?!images/|overlays/)[^/?#\s\"]+"), r"\1\2***"),
    (re.compile(r"([?&]sig=)[^&#\s\"]+"), r"\1***"),
)


def redact(text: str) -> str:
    """``text`` with callback secrets and link signatures replaced by ``***``."""
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a log record's message and arguments through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def redact_access_logs(*names: str) -> None:
    """Make the named loggers (default: uvicorn's access and error logs) redact secrets; idempotent."""
    for name in names or ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
