"""Links the service sends out: signed, expiring booking tokens and staff URLs, all built from the public URL."""

from __future__ import annotations

import hashlib
import hmac

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from followup.settings import Settings


class Links:
    def __init__(self, settings: Settings, key: str) -> None:
        self.base = settings.server.public_url
        self.max_age = settings.security.booking_link_days * 86400
        self.key = key
        self._booking = URLSafeTimedSerializer(self.key, salt="booking")
        self._voice = URLSafeTimedSerializer(self.key, salt="voice-call")

    def keyed_hash(self, text: str, length: int) -> str:
        """The first `length` hex digits of an HMAC-SHA256 of `text` with the service's key: the same text gives
        the same ref, and no one without the key gets the text back (numbers, addresses, emails in logs and rows)."""
        return hmac.new(self.key.encode(), text.encode(), hashlib.sha256).hexdigest()[:length]

    def booking(self, escalation_id: int, nonce: str) -> str:
        """The patient's booking link: signed, expiring, bound to the escalation's id and its random nonce (an id
        alone could name another escalation some day; the nonce is that one escalation's only)."""
        return f"{self.base}/book/{self._booking.dumps([escalation_id, nonce])}"

    def booking_escalation(self, token: str) -> tuple[int, str] | None:
        """The escalation id and nonce a booking token is bound to, or None if tampered with or expired. The
        caller checks the nonce against the escalation's own."""
        try:
            value = self._booking.loads(token, max_age=self.max_age)
        except (BadSignature, SignatureExpired):
            return None
        if (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], int)
            and not isinstance(value[0], bool)
            and isinstance(value[1], str)
        ):
            return value[0], value[1]
        return None  # a token from before nonces (a bare id) opens nothing

    def confirm(self, token: str) -> str:
        """The link that confirms a patient's email address (double opt-in)."""
        return f"{self.base}/confirm/{token}"

    def voice(self, what: str, call_id: int) -> str:
        """Our callback for one phone call (`gather` or `status`): a signed call id on top of Twilio's signature,
        so a URL guessed for another call is refused even with a valid signature."""
        return f"{self.base}/webhooks/twilio/voice/{what}?t={self._voice.dumps(call_id)}"

    def voice_call(self, token: str) -> int | None:
        """The call a voice callback token names, or None (tampered with, or older than a day)."""
        try:
            value = self._voice.loads(token, max_age=86400)
        except (BadSignature, SignatureExpired):
            return None
        return value if isinstance(value, int) else None

    def escalation(self, escalation_id: int) -> str:
        return f"{self.base}/dashboard/escalations/{escalation_id}"

    def patient(self, patient_id: int) -> str:
        return f"{self.base}/dashboard/patients/{patient_id}"

    def dashboard(self) -> str:
        return f"{self.base}/dashboard"

    def login(self) -> str:
        return f"{self.base}/login"
