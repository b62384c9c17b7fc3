"""Bytes on disk and on the wire, safely: atomic writes and typed reads (files.py), outputs checked against the
hashes DVC recorded (integrity.py), and whether the Hugging Face Hub answers (hub.py). May import config/ only."""
