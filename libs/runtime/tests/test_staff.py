"""Staff tokens: only one this installation signed, for one shop, one staff member and a
role the shop knows, and only for its few minutes, names anyone."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from regulars_runtime import staff
from regulars_runtime.staff import StaffPrincipal

KEY = "k" * 40
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
SHOP_A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
SHOP_B = uuid.UUID("00000000-0000-4000-8000-00000000000b")
SAM = StaffPrincipal(SHOP_A, "sam", "advisor")


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": staff.ISSUER,
        "aud": staff.AUDIENCE,
        "sub": "sam",
        "shop": str(SHOP_A),
        "role": "advisor",
        "iat": int(NOW.timestamp()),
        "exp": int((NOW + staff.LIFETIME).timestamp()),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), KEY, algorithm=staff.ALGORITHM)


def test_a_token_minted_for_shop_a_names_shop_a_and_its_staff_member() -> None:
    token = staff.mint(KEY, SAM, NOW)
    assert staff.looks_like_staff_token(token)
    assert staff.verify(KEY, token, NOW) == SAM
    owner = StaffPrincipal(SHOP_B, "maria", "owner")
    assert staff.verify(KEY, staff.mint(KEY, owner, NOW), NOW) == owner


def test_each_role_keeps_its_rights() -> None:
    advisor, manager, owner = (StaffPrincipal(SHOP_A, "x", role) for role in staff.ROLES)
    assert (advisor.is_manager, advisor.is_owner) == (False, False)
    assert (manager.is_manager, manager.is_owner) == (True, False)
    assert (owner.is_manager, owner.is_owner) == (True, True)


def test_a_token_signed_with_another_key_names_nobody() -> None:
    token = staff.mint("another-installation-key-" + "x" * 20, SAM, NOW)
    assert staff.verify(KEY, token, NOW) is None


def test_a_token_with_a_forged_signature_names_nobody() -> None:
    header, payload, _signature = staff.mint(KEY, SAM, NOW).split(".")
    forged = base64.urlsafe_b64encode(b"\x00" * 32).rstrip(b"=").decode()
    assert staff.verify(KEY, f"{header}.{payload}.{forged}", NOW) is None


def test_a_token_whose_claims_were_changed_after_signing_names_nobody() -> None:
    header, _payload, signature = staff.mint(KEY, SAM, NOW).split(".")
    promoted = claims(role="owner")
    payload = base64.urlsafe_b64encode(json.dumps(promoted).encode()).rstrip(b"=").decode()
    assert staff.verify(KEY, f"{header}.{payload}.{signature}", NOW) is None


def test_an_unsigned_token_names_nobody() -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    assert staff.verify(KEY, token, NOW) is None


def test_a_token_expires_after_its_few_minutes_with_half_a_minute_of_skew() -> None:
    token = staff.mint(KEY, SAM, NOW)
    assert staff.verify(KEY, token, NOW + staff.LIFETIME) == SAM
    assert staff.verify(KEY, token, NOW + staff.LIFETIME + timedelta(seconds=29)) == SAM
    assert staff.verify(KEY, token, NOW + staff.LIFETIME + timedelta(seconds=31)) is None
    assert staff.verify(KEY, token, NOW + timedelta(hours=1)) is None


def test_a_token_for_another_audience_or_from_another_issuer_names_nobody() -> None:
    assert staff.verify(KEY, signed(aud="someone-else"), NOW) is None
    assert staff.verify(KEY, signed(iss="someone-else"), NOW) is None
    assert staff.verify(KEY, signed(aud=None), NOW) is None
    assert staff.verify(KEY, signed(iss=None), NOW) is None


def test_a_token_without_its_expiry_or_staff_member_names_nobody() -> None:
    assert staff.verify(KEY, signed(exp=None), NOW) is None
    assert staff.verify(KEY, signed(sub=None), NOW) is None
    assert staff.verify(KEY, signed(sub=""), NOW) is None


@pytest.mark.parametrize("role", ["admin", "Owner", "", 3, None])
def test_a_role_the_shop_does_not_have_names_nobody(role: Any) -> None:
    assert staff.verify(KEY, signed(role=role), NOW) is None


@pytest.mark.parametrize("shop", ["not-a-shop", "", 42, None])
def test_a_token_without_a_shop_names_nobody(shop: Any) -> None:
    assert staff.verify(KEY, signed(shop=shop), NOW) is None


@pytest.mark.parametrize(
    "garbage",
    ["", "eyJ", "eyJ.eyJ.sig", "not a token", "rk_0123456789abcdef_secret", "eyJ" + "a" * 5000],
)
def test_garbage_names_nobody(garbage: str) -> None:
    assert staff.verify(KEY, garbage, NOW) is None


def test_an_api_key_does_not_look_like_a_staff_token() -> None:
    assert not staff.looks_like_staff_token("rk_0123456789abcdef_" + "s" * 43)
    assert staff.looks_like_staff_token(staff.mint(KEY, SAM, NOW))


def test_a_token_from_a_console_whose_clock_runs_a_little_fast_is_good() -> None:
    ahead = staff.mint(KEY, SAM, NOW + timedelta(seconds=20))
    assert staff.verify(KEY, ahead, NOW) == SAM
    assert staff.verify(KEY, staff.mint(KEY, SAM, NOW + timedelta(minutes=2)), NOW) is None


def test_a_token_not_valid_yet_names_nobody() -> None:
    later = int((NOW + timedelta(minutes=2)).timestamp())
    assert staff.verify(KEY, signed(nbf=later), NOW) is None
    assert staff.verify(KEY, signed(nbf=later), NOW + timedelta(minutes=2)) == SAM
    assert staff.verify(KEY, signed(iat="yesterday"), NOW) is None
