"""cohort-finder: find clinical-trial candidates in FHIR R4 data."""

__version__ = "0.1.0"
