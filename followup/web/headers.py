"""Security headers on every response, as the outermost ASGI middleware (so the 413 and 429 answers of
web/limits.py get them too).

- `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no page can be framed by another site (issue 11 framed
  /login and /intake).
- A Content-Security-Policy on every response that has none of its own. The default runs no script at all and
  loads nothing from elsewhere; a page that needs its own script says so (the intake page: `script-src 'self'`,
  a static file, never inline). Styles stay inline-allowed: the pages carry `<style>` blocks and `style=`
  attributes, and CSS cannot run code. The interactive API docs (development only) load their CDN scripts.
- `Referrer-Policy: same-origin` unless the route chose a stricter one (booking: no-referrer, as its URL is a
  token), and `X-Content-Type-Options: nosniff`.
"""

from __future__ import annotations

from followup.web.limits import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
CSP_WITH_SCRIPT = CSP.replace("default-src 'none';", "default-src 'none'; script-src 'self';")
# FastAPI's Swagger UI and ReDoc pages (development only, see web/app.py) run scripts from a CDN.
_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = (
    f"default-src 'none'; script-src {_CDN} 'unsafe-inline'; style-src {_CDN} https://fonts.googleapis.com "
    f"'unsafe-inline'; font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    f"https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc"}
ALWAYS = {
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
}


class SecurityHeaders:
    """Add the headers above to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (DOCS_CSP if scope["path"] in DOCS_PATHS else CSP).encode()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                defaults = {**ALWAYS, b"content-security-policy": csp}
                headers += [(k, v) for k, v in defaults.items() if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
