"""A shop as intake keeps it: its name, its policy versions and its API keys. Pure.

intake is where shops begin: it opens them, versions their policy and issues their keys,
and every other service learns of each from the event the change returns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from regulars_events.catalogue import ShopApiKeyIssued, ShopApiKeyRevoked, ShopPolicyChanged
from regulars_shop.policy import Policy


@dataclass(frozen=True)
class PolicyVersion:
    version: int
    document: dict[str, Any]
    #: the staff member who changed it (None: the shop's system, or the shop's opening)
    changed_by: str | None = None


#: keys in use at once: one per system or integration the shop connects, and a spare
#: while one is rotated; more is a sign of keys handed out and forgotten
MAX_ACTIVE_KEYS = 20


@dataclass(frozen=True)
class ApiKey:
    """A key as it is kept: its id and the SHA-256 of its secret, never the secret."""

    key_id: str
    secret_sha256: bytes
    label: str | None = None


class LastActiveKey(Exception):
    """Revoking it would lock the shop's system out, with nothing left to issue a new one."""


class KeyInUse(Exception):
    """A request may not revoke the key it is signed with: a rotation signs with the new
    key (or an owner revokes at the console), so a script cannot lock itself out midway."""


class TooManyKeys(Exception):
    pass


class UnknownKey(LookupError):
    pass


def coarse_use(at: datetime) -> datetime:
    """When a key was last used, to the hour: enough to find a forgotten key, without a
    write per request or a record of the shop's traffic."""
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass
class Shop:
    id: uuid.UUID
    name: str
    #: the latest policy version (0: none yet)
    policy_version: int = 0
    #: not yet stored: the repository inserts the shop before its policies and keys
    is_new: bool = False
    #: what this unit of work added, for the repository to store
    new_policies: list[PolicyVersion] = field(default_factory=list)
    new_keys: list[ApiKey] = field(default_factory=list)
    #: the ids of the keys not revoked, as loaded (held with the shop until commit)
    active_keys: set[str] = field(default_factory=set)
    #: what this unit of work revoked
    revoked_keys: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, shop_id: uuid.UUID, name: str, timezone: str) -> tuple[Shop, ShopPolicyChanged]:
        """A new shop on the default policy, in its time zone and signed with its name."""
        defaults = Policy.defaults().model_dump(mode="json")
        policy = Policy.model_validate(
            {**defaults, "timezone": timezone, "contact": {**defaults["contact"], "name": name}}
        )
        shop = cls(shop_id, name, is_new=True)
        return shop, shop.change_policy(policy)

    def change_policy(self, policy: Policy, changed_by: str | None = None) -> ShopPolicyChanged:
        """A new version of the whole policy: it applies to work scheduled after it."""
        document = policy.model_dump(mode="json")
        self.policy_version += 1
        self.new_policies.append(PolicyVersion(self.policy_version, document, changed_by))
        return ShopPolicyChanged(
            version=self.policy_version, policy=document, changed_by=changed_by
        )

    def issue_key(
        self, key_id: str, secret_sha256: bytes, label: str | None = None
    ) -> ShopApiKeyIssued:
        """Only the hash is kept and travels: every service can check the key, none can
        show it again."""
        if len(self.active_keys) >= MAX_ACTIVE_KEYS:
            raise TooManyKeys(
                f"this shop has {len(self.active_keys)} keys in use, the most it may have;"
                " revoke one it no longer uses first"
            )
        self.new_keys.append(ApiKey(key_id, secret_sha256, label))
        self.active_keys.add(key_id)
        return ShopApiKeyIssued(key_id=key_id, secret_sha256=secret_sha256.hex())

    def revoke_key(self, key_id: str, signed_with: str | None = None) -> ShopApiKeyRevoked:
        """The key stops working on every service once they hear of it. Raises
        :class:`UnknownKey` for an id not in use (never the shop's, or revoked already)
        and :class:`LastActiveKey` for its only key in use, :class:`KeyInUse` for the key
        the request is signed with."""
        if key_id not in self.active_keys:
            raise UnknownKey(key_id)
        if len(self.active_keys) == 1:
            raise LastActiveKey(
                "this is the shop's only key in use: issue its replacement first, then"
                " revoke this one"
            )
        if key_id == signed_with:
            raise KeyInUse(
                "this request is signed with the key it revokes: revoke it with another of"
                " the shop's keys, or at the console"
            )
        self.active_keys.discard(key_id)
        self.revoked_keys.append(key_id)
        return ShopApiKeyRevoked(key_id=key_id)
