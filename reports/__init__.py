"""reports (filled by later issues)."""
