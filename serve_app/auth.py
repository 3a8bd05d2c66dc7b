"""Who may call the app: the bearer token, and the same-origin rule for requests that change something."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

from serve_app.config import AppArgs
from serve_app.errors import ApiError


def allowed_origins(request: Request, args: AppArgs) -> set[str]:
    """The server's own origin (as the client reached it), its ``public_url``'s, and ``allowed_origins``."""
    own = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    if args.public_url:
        parts = urlsplit(args.public_url)
        own.add(f"{parts.scheme}://{parts.netloc}")
    return own | set(args.allowed_origins)


def bearer_matches(request: Request, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time; the scheme is case-insensitive (RFC 7235)."""
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def check_same_site(request: Request, args: AppArgs) -> None:
    """A request that changes something and comes from a web page (it has an ``Origin``) must come from this server's
    own origin, its ``public_url`` or ``allowed_origins``: a page elsewhere cannot make a browser post here, token or
    not. Clients that are not browsers send no Origin."""
    origin = request.headers.get("origin")
    if origin is None or origin in allowed_origins(request, args):
        return
    raise ApiError(
        403,
        f"cross-site request refused: Origin {origin[:100]!r} is not this server's (allowed_origins lets others in)",
        origin=origin[:100],
    )
