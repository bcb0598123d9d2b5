"""One module per shop system, each mapping that system's webhooks to our event types.

Every module has ``verify(delivery, secret) -> bool`` (the system's own signature scheme)
and, except Jobber whose payload is thin, ``map_delivery(payload, choices, delivery)``.
"""

from __future__ import annotations

from types import ModuleType

from . import housecall_pro, jobber, servicetitan, shopmonkey, tekmetric
from .common import Choices, Delivery, MappingFailed, Raw

SYSTEMS: dict[str, ModuleType] = {
    "shopmonkey": shopmonkey,
    "tekmetric": tekmetric,
    "housecall_pro": housecall_pro,
    "jobber": jobber,
    "servicetitan": servicetitan,
}

__all__ = ["SYSTEMS", "Choices", "Delivery", "MappingFailed", "Raw"]
