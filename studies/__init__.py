"""studies (filled by later issues)."""
