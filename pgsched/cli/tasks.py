"""`pgsched submit|status|list|cancel|retry` (being built)."""
