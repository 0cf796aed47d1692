"""Serving a room: several playground processes behind nginx, one port (deploy/cluster.py)."""
