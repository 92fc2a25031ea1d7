"""Links the service sends out: signed, expiring booking tokens and staff URLs."""

from __future__ import annotations

import secrets
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from followup.settings import Settings

DEV_KEY_FILE = Path("var/secret_key")


def secret_key(settings: Settings) -> str:
    """The configured key; in development, a random one kept in var/ so links survive a restart."""
    if settings.security.secret_key:
        return settings.security.secret_key
    if settings.security.environment == "production":  # settings validation already refuses this
        raise RuntimeError("security.secret_key is required in production")
    try:
        return DEV_KEY_FILE.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(48)
        DEV_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        DEV_KEY_FILE.write_text(key)
        DEV_KEY_FILE.chmod(0o600)
        return key


class Links:
    def __init__(self, settings: Settings) -> None:
        self.base = settings.server.public_url
        self.max_age = settings.security.booking_link_days * 86400
        self.key = secret_key(settings)
        self._booking = URLSafeTimedSerializer(self.key, salt="booking")

    def booking(self, escalation_id: int) -> str:
        return f"{self.base}/book/{self._booking.dumps(escalation_id)}"

    def booking_escalation(self, token: str) -> int | None:
        """The escalation a booking token is bound to, or None if tampered with or expired."""
        try:
            value = self._booking.loads(token, max_age=self.max_age)
        except (BadSignature, SignatureExpired):
            return None
        return value if isinstance(value, int) else None

    def escalation(self, escalation_id: int) -> str:
        return f"{self.base}/dashboard/escalations/{escalation_id}"

    def patient(self, patient_id: int) -> str:
        return f"{self.base}/dashboard/patients/{patient_id}"
