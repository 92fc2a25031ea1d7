"""FHIR R4 in and out: followup's rows as FHIR resources, and a clinic's transaction Bundle as a triage.

Pure mapping, no database: the functions here take rows (anything with the attributes of the tables in
`followup.models`, see `rows.py`) and plain values, and return resources as JSON-able dicts. Every resource built
or read goes through the `fhir.resources` models of FHIR R4B (`fhir.resources.R4B`, package 8.x; its top level
is R5), whose shape is R4's for every resource served here. The routes are `followup.web.fhir`; the write path is
`followup.services.fhir_intake`, which reuses the triage service.
"""

from __future__ import annotations

FHIR_VERSION = "4.0.1"  # what the CapabilityStatement declares: R4 (see the module docstring for R4B)
JSON = "application/fhir+json"
