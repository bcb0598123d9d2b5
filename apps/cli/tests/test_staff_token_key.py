"""`regulars run` gives every service one staff-token key of this machine's: made once,
kept under the data directory for this user alone, or the one the environment sets."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from regulars_cli.settings import settings
from regulars_cli.system import staff_token_key
from regulars_runtime.staff import EMBEDDED_KEY, MIN_KEY_LENGTH


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("REGULARS_STAFF_TOKEN_KEY", raising=False)
    settings.cache_clear()
    yield
    settings.cache_clear()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_first_run_makes_a_key_only_this_user_reads(tmp_path: Path) -> None:
    key = staff_token_key(tmp_path)
    kept = tmp_path / "staff-token.key"
    assert len(key) >= MIN_KEY_LENGTH and key != EMBEDDED_KEY
    assert kept.read_text().strip() == key
    assert mode(kept) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["staff-token.key"]


def test_every_later_run_keeps_the_same_key(tmp_path: Path) -> None:
    first = staff_token_key(tmp_path)
    assert staff_token_key(tmp_path) == first
    assert staff_token_key(tmp_path / ".." / tmp_path.name) == first


def test_each_machine_gets_its_own_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert staff_token_key(tmp_path / "a") != staff_token_key(tmp_path / "b")


def test_a_key_file_others_could_read_is_closed_to_them(tmp_path: Path) -> None:
    key = staff_token_key(tmp_path)
    kept = tmp_path / "staff-token.key"
    kept.chmod(0o644)
    assert staff_token_key(tmp_path) == key
    assert mode(kept) == 0o600


def test_a_short_or_empty_key_file_is_replaced(tmp_path: Path) -> None:
    kept = tmp_path / "staff-token.key"
    kept.write_text("short\n")
    key = staff_token_key(tmp_path)
    assert len(key) >= MIN_KEY_LENGTH and kept.read_text().strip() == key
    assert mode(kept) == 0o600


def test_the_environments_key_wins_and_no_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGULARS_STAFF_TOKEN_KEY", "k" * 40)
    assert staff_token_key(tmp_path) == "k" * 40
    assert not (tmp_path / "staff-token.key").exists()


def test_a_short_key_in_the_environment_stops_the_run_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGULARS_STAFF_TOKEN_KEY", "too-short")
    with pytest.raises(SystemExit) as stopped:
        staff_token_key(tmp_path)
    assert "REGULARS_STAFF_TOKEN_KEY" in str(stopped.value)
