"""runtime (filled by later issues)."""
