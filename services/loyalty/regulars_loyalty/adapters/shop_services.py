"""The services that own what the console shows and changes, over their HTTP APIs.

Each request carries a staff token for the signed-in person, so the owning service
checks their shop and role itself and records their id on what they change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from regulars_runtime import staff
from regulars_runtime.clock import Clock


class ServiceUnreachable(Exception):
    """An owning service did not answer (or answered 5xx): the page says which."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service} is not answering: {detail}")
        self.service = service


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def field_errors(self) -> dict[str, str]:
        """A 422 problem's errors by field (the shape every Regulars API answers)."""
        found: dict[str, str] = {}
        if isinstance(self.body, dict):
            for error in self.body.get("errors") or []:
                if isinstance(error, dict) and error.get("field"):
                    found.setdefault(str(error["field"]), str(error.get("message", "")))
        return found

    @property
    def detail(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("title") or "")
        return ""


class ShopServices:
    def __init__(
        self,
        *,
        intake: str,
        followup: str,
        feedback: str,
        key: str,
        clock: Clock,
        timeout: float = 10.0,
    ) -> None:
        self.urls = {"intake": intake, "followup": followup, "feedback": feedback}
        self.key = key
        self.clock = clock
        self.http = httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=50, max_keepalive_connections=20)
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def _ask(
        self,
        who: staff.StaffPrincipal,
        service: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Answer:
        token = staff.mint(self.key, who, self.clock())
        try:
            response = await self.http.request(
                method,
                self.urls[service] + path,
                params={k: v for k, v in (params or {}).items() if v is not None},
                json=json,
                headers={"authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise ServiceUnreachable(service, type(exc).__name__) from None
        if response.status_code >= 500:
            raise ServiceUnreachable(service, f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(response.status_code, body)

    # -- followup: the call list ------------------------------------------------------------

    async def calls(
        self,
        who: staff.StaffPrincipal,
        *,
        due_before: str,
        assignee: str | None,
        cursor: str | None,
        limit: int,
    ) -> Answer:
        return await self._ask(
            who,
            "followup",
            "GET",
            "/v1/followups",
            params={
                "status": "scheduled",
                "due_before": due_before,
                "assignee": assignee,
                "cursor": cursor,
                "limit": limit,
            },
        )

    async def record_attempt(
        self, who: staff.StaffPrincipal, task_id: str, body: dict[str, Any]
    ) -> Answer:
        return await self._ask(
            who, "followup", "POST", f"/v1/followups/{task_id}/attempts", json=body
        )

    # -- feedback: recovery cases -----------------------------------------------------------

    async def open_cases(
        self, who: staff.StaffPrincipal, *, assignee: str | None, cursor: str | None, limit: int
    ) -> Answer:
        return await self._ask(
            who,
            "feedback",
            "GET",
            "/v1/cases",
            params={
                "open": "true",
                "order": "sla",
                "assignee": assignee,
                "cursor": cursor,
                "limit": limit,
            },
        )

    async def case(self, who: staff.StaffPrincipal, case_id: str) -> Answer:
        return await self._ask(who, "feedback", "GET", f"/v1/cases/{case_id}")

    async def case_command(
        self, who: staff.StaffPrincipal, case_id: str, verb: str, body: dict[str, Any]
    ) -> Answer:
        return await self._ask(who, "feedback", "POST", f"/v1/cases/{case_id}/{verb}", json=body)

    # -- intake: the shop's policy -----------------------------------------------------------

    async def policy(self, who: staff.StaffPrincipal) -> Answer:
        return await self._ask(who, "intake", "GET", "/v1/policy")

    async def change_policy(self, who: staff.StaffPrincipal, policy: dict[str, Any]) -> Answer:
        return await self._ask(who, "intake", "PUT", "/v1/policy", json=policy)
