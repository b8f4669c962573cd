"""Exporting coverage-optimised personas from a run: pool sampling in the sandbox,
selection, annotation, files, dataset card (see :func:`export_personas`)."""

from personaevo.export.api import export_personas
from personaevo.export.models import ExportSummary
from personaevo.export.records import read_records

__all__ = ["ExportSummary", "export_personas", "read_records"]
