"""Diameter Gq' admission towards the RACS (SPDF)."""
