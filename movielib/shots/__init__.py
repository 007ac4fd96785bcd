"""Shot boundary detection and per-shot frame sampling."""
