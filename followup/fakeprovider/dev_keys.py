"""DEV-ONLY credentials and signing key of the fake provider.

Nothing here is a secret: the key pair was generated once for local development and tests and is
published with the source. Never configure a real deployment with `DEV_EVENT_PUBLIC_KEY`: anyone
could sign events with the private key below.
"""

from __future__ import annotations

# Fake Twilio and SendGrid credentials the CLI falls back to; the SDKs accept any string.
DEV_TWILIO_ACCOUNT_SID = "ACfa4ef00d0000000000000000000000de"
DEV_TWILIO_AUTH_TOKEN = "fa4ef00ddeadbeeffa4ef00ddeadbeef"  # noqa: S105 - a published fake
DEV_SENDGRID_API_KEY = "SG.dev-fake-provider.not-a-real-key-for-local-use-only"

# DEV-ONLY ECDSA P-256 key pair for signing SendGrid Event Webhook posts (generated with `cryptography`).
DEV_EVENT_PRIVATE_KEY_PEM = b"""-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgeNssC9ACMCgRjXf0
wJQiteJoArr2J00bEun+m0NMk7KhRANCAAQbteRV1NE5+27Ro2Q4BqQEfAy0smJ8
gfPr1Im1kKqxsJMpQ+lKq1GJdgQc75TQqksNmZugq1YKcKqXWSMUcChP
-----END PRIVATE KEY-----
"""

# The public half, as SendGrid's settings page shows it (base64 DER SubjectPublicKeyInfo, no PEM armour):
# what `sendgrid.helpers.eventwebhook.EventWebhook(public_key)` takes.
DEV_EVENT_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEG7XkVdTROftu0aNkOAakBHwMtLJi"
    "fIHz69SJtZCqsbCTKUPpSqtRiXYEHO+U0KpLDZmboKtWCnCql1kjFHAoTw=="
)
