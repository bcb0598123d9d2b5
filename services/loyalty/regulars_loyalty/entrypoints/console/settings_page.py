"""The owner's settings: read from intake's policy, saved as a new version through it,
with intake's validation errors shown next to their fields."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ...adapters.shop_services import ServiceUnreachable
from ...domain.settings_form import (
    CONTACT_KEYS,
    DAYS,
    ROLES,
    SLA_KEYS,
    STAFF_FIELDS,
    duration_parts,
    hours_text,
    read_form,
    staff_row_keys,
    suppressed,
)
from .access import Forbidden, Signed, check_csrf, form_of, signed_in
from .pages import view
from .parts import parts_of

router = APIRouter(include_in_schema=False)


def _owner(signed: Signed) -> None:
    if not signed.viewer.changes_settings:
        raise Forbidden("Only an owner changes the shop's settings.")


def _values(policy: dict[str, Any]) -> dict[str, Any]:
    """The form's fields filled from a policy."""
    values: dict[str, Any] = {}
    for key, _ in CONTACT_KEYS:
        values[f"contact.{key}"] = (policy.get("contact") or {}).get(key)
    for day, _ in DAYS:
        values[f"business_hours.{day}"] = hours_text(
            (policy.get("business_hours") or {}).get(day, [])
        )
    values["holidays"] = "\n".join(str(d) for d in policy.get("holidays") or [])
    for key, _ in SLA_KEYS:
        amount, unit = duration_parts(str(policy.get(key, "")))
        values[f"{key}.amount"], values[f"{key}.unit"] = amount, unit
    for channel in ("sms", "email"):
        values[f"channels.{channel}"] = (policy.get("channels") or {}).get(channel, "on")
    return values


def _staff_rows(policy: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        {**m, "key": str(i), "was": m["id"], "legend": m.get("name") or m["id"]}
        for i, m in enumerate(policy.get("staff") or [])
    ]
    rows.append({"key": "new", "was": "", "legend": "Add a staff member", "role": "advisor"})
    return rows


def _rows_from_form(form: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for key in staff_row_keys(form):
        row: dict[str, Any] = {f: form.get(f"staff.{key}.{f}", "") for f in STAFF_FIELDS}
        row.update(key=key, was=form.get(f"staff.{key}.was", ""))
        row["legend"] = "Add a staff member" if key == "new" else row["name"] or row["id"]
        rows.append(row)
    return rows


async def _page(
    request: Request,
    signed: Signed,
    status: int,
    *,
    policy: dict[str, Any],
    version: int | None,
    values: dict[str, Any],
    staff: list[dict[str, Any]],
    errors: dict[str, str],
) -> Response:
    return await view(
        request,
        signed,
        "settings.html",
        "settings",
        status,
        title="Settings",
        version=version,
        saved=request.query_params.get("saved") if status == 200 else None,
        suppressed=suppressed(policy.get("contact") or {}),
        timezone=policy.get("timezone", ""),
        contact_keys=CONTACT_KEYS,
        days=DAYS,
        sla_keys=SLA_KEYS,
        roles=ROLES,
        values=values,
        staff=staff,
        errors=errors,
    )


async def _current(request: Request, signed: Signed) -> tuple[dict[str, Any], int | None]:
    answer = await parts_of(request).services.policy(signed.principal)
    if answer.status == 200 and isinstance(answer.body, dict):
        return dict(answer.body["policy"]), answer.body.get("version")
    raise ServiceUnreachable("intake", f"HTTP {answer.status}")


async def _unreachable(request: Request, signed: Signed) -> Response:
    return await view(
        request,
        signed,
        "problem.html",
        "settings",
        503,
        title="Settings cannot be reached",
        message="intake, which keeps the shop's policy, is not answering. Try again shortly.",
        back=None,
        back_words=None,
    )


@router.get("/settings")
async def settings_page(request: Request) -> Response:
    signed = await signed_in(request)
    _owner(signed)
    try:
        policy, version = await _current(request, signed)
    except ServiceUnreachable:
        return await _unreachable(request, signed)
    return await _page(
        request,
        signed,
        200,
        policy=policy,
        version=version,
        values=_values(policy),
        staff=_staff_rows(policy),
        errors={},
    )


@router.post("/settings")
async def save_settings(request: Request) -> Response:
    signed = await signed_in(request)
    _owner(signed)
    form = await form_of(request)
    check_csrf(form, signed.csrf)
    try:
        current, version = await _current(request, signed)
    except ServiceUnreachable:
        return await _unreachable(request, signed)
    change = read_form(form, current, signed.viewer.staff_id)
    if not change.errors:
        try:
            answer = await parts_of(request).services.change_policy(signed.principal, change.policy)
        except ServiceUnreachable:
            return await _unreachable(request, signed)
        if answer.ok:
            saved = answer.body.get("version") if isinstance(answer.body, dict) else ""
            return RedirectResponse(f"/settings?saved={saved}", status_code=303)
        if answer.status == 403:
            raise Forbidden(answer.detail or "Only an owner changes the shop's settings.")
        for key, message in answer.field_errors().items():
            change.error_for(key, message)
        if not change.errors:
            change.errors["policy"] = answer.detail or "intake refused the change."
    values = {**_values(change.policy), **{k: v for k, v in form.items() if k != "csrf"}}
    for channel in ("sms", "email"):
        values[f"channels.{channel}"] = form.get(f"channels.{channel}", "off")
    return await _page(
        request,
        signed,
        422,
        policy=current,
        version=version,
        values=values,
        staff=_rows_from_form(form),
        errors=change.errors,
    )
