"""CI glue: cache keys and step outputs."""
