"""make bench: speed and memory of the suite on this machine (see __main__.py)."""
