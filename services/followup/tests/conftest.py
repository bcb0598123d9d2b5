"""Makes the in-memory unit of work (fakes.py) importable as ``followup_fakes``.

Tests are imported with ``--import-mode=importlib`` (no sibling imports), and every
service may have a fakes.py of its own: a name of this service's avoids a clash.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "followup_fakes", Path(__file__).with_name("fakes.py")
)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules["followup_fakes"] = _module
_spec.loader.exec_module(_module)
