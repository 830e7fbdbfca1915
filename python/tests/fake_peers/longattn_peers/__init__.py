"""A test double of the peer bridge's Python side (see __main__.py)."""
