"""The `regulars` command: run the system, create shops, migrate, look at its state."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from datetime import datetime
from typing import Any

import httpx

from .system import SERVICES, current, kafka_config


def _cmd_run(args: argparse.Namespace) -> int:
    from .launcher import Launcher

    return Launcher().run()


def _cmd_migrate(args: argparse.Namespace) -> int:
    from .schemas import migrate

    applied = asyncio.run(migrate(current().database_url))
    for schema, versions in applied.items():
        print(f"{schema}: " + (", ".join(versions) if versions else "up to date"))
    return 0


async def _create_shop(database_url: str, name: str, timezone: str) -> tuple[uuid.UUID, str]:
    from regulars_intake import bootstrap, handlers
    from regulars_runtime.clock import system_clock
    from regulars_runtime.db import create_pool

    pool = await create_pool(database_url, "intake", min_size=1, max_size=1)
    try:
        bus = bootstrap.bus(handlers.Deps(clock=system_clock), pool)
        shop = await bus.handle(handlers.CreateShop(name, timezone))
        return shop.shop_id, shop.api_key
    finally:
        await pool.close()


async def _staff_link(database_url: str, shop_id: uuid.UUID, email: str) -> str:
    from regulars_loyalty import bootstrap, handlers
    from regulars_loyalty.handlers.console import IssueSignInLink
    from regulars_runtime.clock import system_clock
    from regulars_runtime.db import create_pool

    pool = await create_pool(database_url, "loyalty", min_size=1, max_size=1)
    try:
        bus = bootstrap.bus(handlers.Deps(clock=system_clock), pool)
        token: str = await bus.handle(IssueSignInLink(shop_id, email))
        return token
    finally:
        await pool.close()


def _cmd_staff_link(args: argparse.Namespace) -> int:
    from regulars_loyalty.handlers.console import UnknownStaff

    from .settings import settings

    try:
        shop_id = uuid.UUID(args.shop)
    except ValueError:
        print(f"regulars: --shop {args.shop[:60]!r} is not a shop id (a UUID)", file=sys.stderr)
        return 2
    system = current()
    try:
        token = asyncio.run(_staff_link(system.database_url, shop_id, args.email))
    except UnknownStaff as exc:
        print(f"regulars: {exc}", file=sys.stderr)
        return 1
    console = (settings().console_public_url or system.services["loyalty"]).rstrip("/")
    print(f"{console}/sign-in/{token}")
    if not args.quiet:
        print("(works once, for 15 minutes)", file=sys.stderr)
    return 0


def _cmd_shops_create(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = args.name.strip()
    if not name:
        print("regulars: --name must not be empty", file=sys.stderr)
        return 2
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        print(
            f"regulars: --timezone {args.timezone[:60]!r} is not an IANA time zone "
            "(e.g. America/New_York)",
            file=sys.stderr,
        )
        return 2
    shop_id, api_key = asyncio.run(_create_shop(current().database_url, name, args.timezone))
    if args.json:
        print(json.dumps({"shop_id": str(shop_id), "api_key": api_key}))
    else:
        print(f"shop_id: {shop_id}\napi_key: {api_key}\n(the key is shown once; keep it safe)")
    return 0


def _cmd_shops_list(args: argparse.Namespace) -> int:
    async def go() -> list[Any]:
        from regulars_intake import bootstrap, handlers
        from regulars_runtime.clock import system_clock
        from regulars_runtime.db import create_pool

        pool = await create_pool(current().database_url, "intake", min_size=1, max_size=1)
        try:
            bus = bootstrap.bus(handlers.Deps(clock=system_clock), pool)
            shops = await bus.handle(handlers.ListShops())
            return list(shops)
        finally:
            await pool.close()

    for row in asyncio.run(go()):
        print(
            f"{row['id']}  {row['name']}  {row['timezone']}  created {row['created_at']:%Y-%m-%d}"
        )
    return 0


def _shop_arg(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        print(f"regulars: --shop {value[:60]!r} is not a shop id (a UUID)", file=sys.stderr)
        return None


async def _keys(database_url: str, shop_id: uuid.UUID, command: Any | None) -> Any:
    """Run a key command through intake's handlers (None: list the keys), as its API does."""
    from regulars_intake import bootstrap, handlers
    from regulars_intake.adapters import queries
    from regulars_runtime.clock import system_clock
    from regulars_runtime.db import create_pool

    pool = await create_pool(database_url, "intake", min_size=1, max_size=1)
    try:
        bus = bootstrap.bus(handlers.Deps(clock=system_clock), pool)
        result = await bus.handle(command) if command is not None else None
        return result, await queries.keys(pool, shop_id, after=None, limit=10_000)
    finally:
        await pool.close()


def _key_line(row: dict[str, Any]) -> str:
    used = f"{row['last_used_at']:%Y-%m-%d %H:00}" if row["last_used_at"] else "never"
    state = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "active"
    return (
        f"{row['key_id']}  created {row['issued_at']:%Y-%m-%d %H:%M}  last used {used}"
        f"  {state}  {row['label'] or ''}".rstrip()
    )


def _key_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key_id": row["key_id"],
        "label": row["label"],
        "created_at": row["issued_at"].isoformat(),
        "last_used_at": row["last_used_at"].isoformat() if row["last_used_at"] else None,
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }


def _cmd_keys_issue(args: argparse.Namespace) -> int:
    from regulars_intake.domain.shop import TooManyKeys
    from regulars_intake.handlers import IssueApiKey

    shop_id = _shop_arg(args.shop)
    if shop_id is None:
        return 2
    label = (args.label or "").strip() or None
    if label is not None and len(label) > 100:
        print("regulars: --label is at most 100 characters", file=sys.stderr)
        return 2
    try:
        issued, _rows = asyncio.run(
            _keys(current().database_url, shop_id, IssueApiKey(shop_id, label))
        )
    except LookupError:
        print(f"regulars: no shop {shop_id}", file=sys.stderr)
        return 1
    except TooManyKeys as exc:
        print(f"regulars: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {"shop_id": str(shop_id), "key_id": issued.key_id, "api_key": issued.api_key}
            )
        )
    else:
        print(
            f"key_id: {issued.key_id}\napi_key: {issued.api_key}"
            "\n(the key is shown once; keep it safe)"
        )
    return 0


def _cmd_keys_list(args: argparse.Namespace) -> int:
    shop_id = _shop_arg(args.shop)
    if shop_id is None:
        return 2
    _none, rows = asyncio.run(_keys(current().database_url, shop_id, None))
    if args.json:
        print(json.dumps([_key_json(r) for r in rows]))
    else:
        for row in rows:
            print(_key_line(row))
        if not rows:
            print(f"no keys for shop {shop_id}")
    return 0


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    from regulars_intake.domain.shop import LastActiveKey, UnknownKey
    from regulars_intake.handlers import RevokeApiKey

    shop_id = _shop_arg(args.shop)
    if shop_id is None:
        return 2
    key_id = args.key_id.removeprefix("rk_").partition("_")[0]  # a whole key names its id
    try:
        now, _rows = asyncio.run(
            _keys(current().database_url, shop_id, RevokeApiKey(shop_id, key_id))
        )
    except UnknownKey:
        print(f"regulars: no API key {key_id[:40]!r} in shop {shop_id}", file=sys.stderr)
        return 1
    except LookupError:
        print(f"regulars: no shop {shop_id}", file=sys.stderr)
        return 1
    except LastActiveKey as exc:
        print(f"regulars: {exc}", file=sys.stderr)
        return 1
    print(
        f"{key_id}: revoked; it stops working on every service within 30 seconds"
        if now
        else f"{key_id}: was revoked already"
    )
    return 0


async def _status() -> dict[str, Any]:
    from regulars_bus.dead_letters import waiting
    from regulars_bus.kafka import admin_client, cluster_id
    from regulars_bus.relay import backlog, parked_rows
    from regulars_runtime.db import connect, server_version

    state = current()
    report: dict[str, Any] = {"services": {}, "broker": {}, "database": {}}
    async with httpx.AsyncClient(timeout=3) as http:
        for name in SERVICES:
            url = state.services.get(name, "")
            try:
                ready = await http.get(f"{url}/readyz")
                report["services"][name] = {
                    "url": url,
                    "ready": ready.status_code == 200,
                    **ready.json(),
                }
            except httpx.HTTPError as exc:
                report["services"][name] = {"url": url, "ready": False, "error": type(exc).__name__}
    admin = admin_client(kafka_config(state), "regulars-status")
    try:
        await asyncio.wait_for(admin.start(), 5)
        topics = await admin.list_topics()
        report["broker"] = {
            "bootstrap": state.kafka_bootstrap_servers,
            "up": True,
            "cluster_id": await cluster_id(admin),
            "topics": len([t for t in topics if t.startswith("regulars.")]),
        }
        await admin.close()
    except Exception as exc:
        report["broker"] = {
            "bootstrap": state.kafka_bootstrap_servers,
            "up": False,
            "error": type(exc).__name__,
        }
    try:
        report["database"] = {"up": True, "version": await server_version(state.database_url)}
        for name in SERVICES:
            conn = await connect(state.database_url, name)
            try:
                report["services"][name].update(
                    {
                        "outbox_backlog": await backlog(conn),
                        "outbox_parked": await parked_rows(conn),
                        "dead_letters": await waiting(conn),
                    }
                )
                if name == "intake":
                    from regulars_intake.adapters.queries import waiting_counts

                    report["waiting"] = await waiting_counts(conn)
            finally:
                await conn.close()
    except Exception as exc:
        report["database"] = {"up": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return report


def _cmd_status(args: argparse.Namespace) -> int:
    report = asyncio.run(_status())
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        db = report["database"]
        db_state = f"up {db.get('version', '')}" if db.get("up") else f"DOWN {db.get('error')}"
        print(f"database  {db_state}")
        b = report["broker"]
        print(
            f"broker    {b['bootstrap']}  "
            + (
                f"up, cluster {b['cluster_id']}, {b['topics']} topics"
                if b.get("up")
                else f"DOWN ({b.get('error')})"
            )
        )
        for name, s in report["services"].items():
            state = "ready" if s.get("ready") else "NOT READY"
            print(
                f"{name:<9} {s['url']:<24} {state:<10}"
                f" outbox backlog {s.get('outbox_backlog', '?')}"
                f"  dead letters {s.get('dead_letters', '?')}"
                + (
                    f"  outbox rows refused by the broker {s['outbox_parked']}"
                    if s.get("outbox_parked")
                    else ""
                )
            )
        for shop in report.get("waiting", []):
            # Never dropped: what waits this long needs someone to post what is missing.
            print(
                f"waiting   shop {shop['shop_id']}: {shop['waiting']} event(s) held 7+ days"
                f" for a customer, repair order or invoice (oldest {shop['oldest']:%Y-%m-%d});"
                " GET /v1/waiting lists them"
            )
    healthy = (
        report["database"].get("up")
        and report["broker"].get("up")
        and all(s.get("ready") for s in report["services"].values())
    )
    return 0 if healthy else 1


def _cmd_outbox_replay(args: argparse.Namespace) -> int:
    from regulars_bus.relay import replay_since
    from regulars_runtime.db import connect

    try:
        since = datetime.fromisoformat(args.since)
    except ValueError:
        print(f"regulars: --since {args.since!r} is not an ISO-8601 time", file=sys.stderr)
        return 2
    if since.tzinfo is None:
        print("regulars: --since needs a UTC offset, e.g. 2026-11-23T08:00:00Z", file=sys.stderr)
        return 2

    async def go() -> dict[str, int]:
        out = {}
        for name in args.service or SERVICES:
            conn = await connect(current().database_url, name)
            try:
                out[name] = await replay_since(conn, since)
            finally:
                await conn.close()
        return out

    for name, count in asyncio.run(go()).items():
        print(f"{name}: {count} events will be published again")
    return 0


def _cmd_dead_letters_list(args: argparse.Namespace) -> int:
    from regulars_bus.dead_letters import parked
    from regulars_runtime.db import connect

    async def go() -> list[dict[str, Any]]:
        rows = []
        for name in args.service or SERVICES:
            conn = await connect(current().database_url, name)
            try:
                found = await parked(conn, include_replayed=args.all)
            finally:
                await conn.close()
            rows += [{"service": name, **dict(r)} for r in found]
        return rows

    rows = asyncio.run(go())
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for r in rows:
        state = f"replayed {r['replayed_at']:%Y-%m-%d %H:%M}" if r["replayed_at"] else "parked"
        print(
            f"{r['service']}  {r['parked_at']:%Y-%m-%d %H:%M:%S}  {state}  {r['type'] or '?'}"
            f"  {r['event_id'] or '-'}  {r['topic']}/{r['part']}@{r['kafka_offset']}"
            f"\n    {r['error'][:300]}"
        )
    if not rows:
        print("no dead letters" + ("" if args.all else " waiting for a replay"))
    return 0


def _cmd_dead_letters_replay(args: argparse.Namespace) -> int:
    from regulars_bus.dead_letters import replay
    from regulars_runtime.db import connect

    try:
        event_ids = [uuid.UUID(e) for e in args.event_id] if args.event_id else None
    except ValueError:
        print("regulars: --event-id takes an event id (a UUID)", file=sys.stderr)
        return 2

    async def go() -> Any:
        state = current()
        conn = await connect(state.database_url, args.service)
        try:
            return await replay(
                kafka_config(state),
                conn,
                args.service,
                event_ids=event_ids,
                from_topic=args.from_topic,
            )
        finally:
            await conn.close()

    done = asyncio.run(go())
    print(
        f"{args.service}: {done.replayed} published again to their topics"
        f" ({done.found} dead letters, {done.already} replayed before,"
        f" {done.skipped} not asked for)"
    )
    if done.missing:
        print(
            f"{args.service}: {done.missing} parked before dead letters kept their payload"
            " are no longer on the dead-letter topic (the broker lost its log): not replayed",
            file=sys.stderr,
        )
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    """The monthly database check for one shop, now (it also runs by itself on the 1st)."""
    from datetime import date

    from regulars_followup import bootstrap
    from regulars_followup.handlers import Deps
    from regulars_followup.handlers.sweep import run_monthly_check
    from regulars_runtime.clock import system_clock
    from regulars_runtime.db import create_pool

    try:
        shop_id = uuid.UUID(args.shop)
    except ValueError:
        print(f"regulars: --shop {args.shop!r} is not a shop id", file=sys.stderr)
        return 2
    try:
        month = date.fromisoformat(f"{args.month}-01") if args.month else system_clock().date()
    except ValueError:
        print(f"regulars: --month {args.month!r} is not YYYY-MM", file=sys.stderr)
        return 2

    async def go() -> dict[str, int]:
        pool = await create_pool(current().database_url, "followup", min_size=1, max_size=1)
        try:
            bus = bootstrap.bus(Deps(clock=system_clock), pool)
            return await run_monthly_check(
                bus.unit_of_work, system_clock, shop_id, month.replace(day=1)
            )
        finally:
            await pool.close()

    counts = asyncio.run(go())
    print(
        "asked for: " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing new")
    )
    return 0


#: where the SMS provider posts a customer's text (followup's entrypoints/sms_hooks.py)
SMS_INBOUND_HOOK = "/hooks/sms/inbound"
#: the sender number followup texts from in embedded mode (its SMS_FROM default)
LOCAL_SENDER = "+15555550000"


def _cmd_sms_reply(args: argparse.Namespace) -> int:
    """Play a customer: the local SMS stand-in posts the text to followup's inbound hook,
    signed, as the provider does when a text reaches our number."""
    from .settings import settings
    from .system import sms_gateway

    gateway, followup = sms_gateway()
    text = {
        "from": args.from_,
        "to": args.to or settings().sms_from or LOCAL_SENDER,
        "text": args.text,
        "url": args.url or followup + SMS_INBOUND_HOOK,
        **({"sid": args.sid} if args.sid else {}),
    }
    try:
        answer = httpx.post(f"{gateway}/local/inbound", json=text, timeout=15)
    except httpx.HTTPError as exc:
        print(
            f"regulars sms reply: the local SMS gateway at {gateway} did not answer"
            f" ({type(exc).__name__}); is `make run` running? (REGULARS_SMS_URL)",
            file=sys.stderr,
        )
        return 1
    if answer.status_code != 200:
        print(
            f"regulars sms reply: the gateway answered {answer.status_code}: {answer.text}",
            file=sys.stderr,
        )
        return 1
    result = answer.json()
    print(
        json.dumps(result)
        if args.json
        else (f"{result['message_sid']}: followup answered {result['status_code']}")
    )
    return 0 if result.get("status_code") == 200 else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="regulars", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the whole system on embedded parts").set_defaults(func=_cmd_run)
    sub.add_parser("migrate", help="apply every service's migrations").set_defaults(
        func=_cmd_migrate
    )
    status = sub.add_parser("status", help="each service, the broker, the database, backlogs")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)
    shops = sub.add_parser("shops", help="shops and their API keys").add_subparsers(
        dest="shops_command", required=True
    )
    create = shops.add_parser("create", help="create a shop and print its API key (once)")
    create.add_argument("--name", required=True)
    create.add_argument("--timezone", required=True, help="IANA zone, e.g. America/Chicago")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=_cmd_shops_create)
    shops.add_parser("list", help="list shops").set_defaults(func=_cmd_shops_list)
    keys = sub.add_parser("keys", help="a shop's API keys").add_subparsers(
        dest="keys_command", required=True
    )
    issue = keys.add_parser("issue", help="issue a new API key for a shop and print it (once)")
    issue.add_argument("--shop", required=True, help="the shop id")
    issue.add_argument("--label", help="what the key is for, e.g. Tekmetric")
    issue.add_argument("--json", action="store_true")
    issue.set_defaults(func=_cmd_keys_issue)
    listed = keys.add_parser("list", help="a shop's keys: created, last used, revoked")
    listed.add_argument("--shop", required=True, help="the shop id")
    listed.add_argument("--json", action="store_true")
    listed.set_defaults(func=_cmd_keys_list)
    revoke = keys.add_parser(
        "revoke", help="revoke a key: it stops on every service within 30 seconds"
    )
    revoke.add_argument("--shop", required=True, help="the shop id")
    revoke.add_argument("key_id", help="the key's id (as listed), or the key itself")
    revoke.set_defaults(func=_cmd_keys_revoke)
    staff = sub.add_parser("staff", help="the shop's staff and the console").add_subparsers(
        dest="staff_command", required=True
    )
    link = staff.add_parser(
        "link", help="print a one-time console sign-in link for a staff member (15 minutes)"
    )
    link.add_argument("--shop", required=True, help="the shop id")
    link.add_argument("--email", required=True, help="the staff member's email in the policy")
    link.add_argument("--quiet", action="store_true", help="print the link alone")
    link.set_defaults(func=_cmd_staff_link)
    sweep = sub.add_parser("sweep", help="run the monthly database check for a shop now")
    sweep.add_argument("--shop", required=True, help="the shop id")
    sweep.add_argument("--month", help="YYYY-MM (default: this month)")
    sweep.set_defaults(func=_cmd_sweep)
    outbox = sub.add_parser("outbox", help="the transactional outbox").add_subparsers(
        dest="outbox_command", required=True
    )
    replay = outbox.add_parser("replay", help="publish retained events again")
    replay.add_argument("--since", required=True, help="ISO-8601 time with offset")
    replay.add_argument("--service", action="append", choices=SERVICES)
    replay.set_defaults(func=_cmd_outbox_replay)
    sms = sub.add_parser("sms", help="the local SMS gateway stand-in").add_subparsers(
        dest="sms_command", required=True
    )
    reply = sms.add_parser(
        "reply", help="text our number as a customer would (a signed inbound webhook)"
    )
    reply.add_argument("--from", dest="from_", required=True, help="the customer's number, E.164")
    reply.add_argument("--text", required=True, help="what they text, e.g. STOP")
    reply.add_argument("--to", help=f"our number (default SMS_FROM, else {LOCAL_SENDER})")
    reply.add_argument("--sid", help="a MessageSid, to send the same text again (a retry)")
    reply.add_argument("--url", help="the inbound webhook (default followup's public URL)")
    reply.add_argument("--json", action="store_true")
    reply.set_defaults(func=_cmd_sms_reply)
    dead = sub.add_parser(
        "dead-letters", help="events a service could not apply, and replaying them"
    ).add_subparsers(dest="dead_letters_command", required=True)
    listing = dead.add_parser("list", help="dead letters waiting for a replay")
    listing.add_argument("--service", action="append", choices=SERVICES)
    listing.add_argument("--all", action="store_true", help="replayed ones too")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_cmd_dead_letters_list)
    again = dead.add_parser("replay", help="publish a service's dead letters to their topics again")
    again.add_argument("--service", required=True, choices=SERVICES)
    again.add_argument(
        "--event-id", action="append", help="only this event (repeatable); default: all"
    )
    again.add_argument(
        "--from-topic",
        action="store_true",
        help="also records on the dead-letter topic with no row (parked while the database"
        " was away, before dead letters kept their payload)",
    )
    again.set_defaults(func=_cmd_dead_letters_replay)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
