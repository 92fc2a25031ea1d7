"""What patients and staff read: message templates, the links in them, dates in the patient's language."""
