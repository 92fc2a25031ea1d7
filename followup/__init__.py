"""followup: SMS and email follow-up for patients with muscle twitching, with red-flag escalation."""

__version__ = "0.1.0"
