"""``python -m pytest_llmperf.hardware``: this machine's description, fingerprint and digest as
JSON, to inspect by hand what a baseline will be keyed on."""

from __future__ import annotations

import json
import sys

from .fingerprint import fingerprint_fields, fingerprint_hash
from .machine import detect

if __name__ == "__main__":  # pragma: no cover - manual inspection aid
    _info = detect()
    _fields = fingerprint_fields(_info)
    json.dump({"info": _info, "fingerprint": _fields, "hash": fingerprint_hash(_fields)}, sys.stdout, indent=2)
    sys.stdout.write("\n")
