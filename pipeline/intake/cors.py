"""CORS and the Origin check: which browser pages may read the intake's answers, and which may write.

CORS headers only decide whether a page may *read* an answer. Browsers send
a POST with a text/plain body, and every beacon, without asking first (no
preflight), so a page of any site could still *write* events. When
RUM_INTAKE_CORS_ORIGINS lists origins, :func:`origin_refused` closes that:
a request whose ``Origin`` is not listed is refused before its body is read.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web


def origin_refused(origins: tuple[str, ...], headers: Mapping[str, str]) -> bool:
    """True when ``origins`` lists origins (no ``*``) and the request comes from a page of another.

    ``Origin: null`` (sandboxed frames, local files) is another origin too.
    Requests without Origin come from servers and tools, which can send any
    header they like anyway: the client token is their check.
    """
    if not origins or "*" in origins:
        return False
    origin = headers.get("Origin")
    return origin is not None and origin.rstrip("/") not in origins


def allowed_origin(origins: tuple[str, ...], headers: Mapping[str, str]) -> str | None:
    """The Access-Control-Allow-Origin value for this request, or None to send none."""
    origin = headers.get("Origin")
    if "*" in origins:
        return "*"
    if origin and origin.rstrip("/") in origins:
        return origin
    return None


def add_cors(origins: tuple[str, ...], headers: Mapping[str, str], response: web.StreamResponse) -> None:
    """Let an allowed page read ``response`` (and its Retry-After)."""
    allowed = allowed_origin(origins, headers)
    if allowed is None:
        return
    response.headers["Access-Control-Allow-Origin"] = allowed
    if allowed != "*":
        response.headers["Vary"] = "Origin"
    response.headers["Access-Control-Expose-Headers"] = "Retry-After"


def preflight(origins: tuple[str, ...], headers: Mapping[str, str]) -> web.Response:
    """The answer to a CORS preflight: allow POST with the headers the browser asks for."""
    response = web.Response(status=204)
    if allowed_origin(origins, headers) is not None:
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        requested = headers.get("Access-Control-Request-Headers")
        response.headers["Access-Control-Allow-Headers"] = requested or "Content-Type, DD-API-KEY"
        response.headers["Access-Control-Max-Age"] = "86400"
    return response
