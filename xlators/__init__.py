"""Translators, one module per volfile type: xlators/<category>/<name>.py."""
