"""The handler tests' fakes, importable as ``feedback_fakes``: tests are imported by path
(``--import-mode=importlib``), and every service may keep a ``fakes.py`` of its own."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "feedback_fakes", Path(__file__).with_name("fakes.py")
)
assert _spec is not None and _spec.loader is not None
_fakes = importlib.util.module_from_spec(_spec)
sys.modules["feedback_fakes"] = _fakes
_spec.loader.exec_module(_fakes)
