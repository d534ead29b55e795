"""Leakage audit: exact and near-duplicate images, patient overlap and leak scores.

``bmbench audit`` runs :func:`audit_source` and writes the reports of
:mod:`bmbench.audit.report`; :func:`split_groups` gives the groups of
``split.group_by: near_duplicates``.
"""

from .core import AuditResult, Verdict, audit_source, audit_table, near_duplicates, split_groups
from .neighbours import NearDuplicateSettings

__all__ = ["AuditResult", "NearDuplicateSettings", "Verdict", "audit_source", "audit_table",
           "near_duplicates", "split_groups"]
