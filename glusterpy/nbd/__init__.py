"""NBD exports of volumes' image files (see server.py)."""
