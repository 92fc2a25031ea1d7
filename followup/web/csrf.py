"""CSRF for public forms: a random cookie plus a signed copy in the form (double submit)."""

from __future__ import annotations

import hmac
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "followup_csrf"
MAX_AGE = 2 * 3600


class Csrf:
    def __init__(self, key: str) -> None:
        self._s = URLSafeTimedSerializer(key, salt="csrf")

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(24)

    def token(self, cookie: str) -> str:
        return self._s.dumps(cookie)

    def valid(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        try:
            value = self._s.loads(token, max_age=MAX_AGE)
        except BadSignature:
            return False
        return isinstance(value, str) and hmac.compare_digest(value, cookie)
