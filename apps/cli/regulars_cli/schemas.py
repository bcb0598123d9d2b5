"""Every service's migrations, for `regulars migrate` (and the Kubernetes migration Job)."""

from __future__ import annotations

import asyncpg
from regulars_feedback.bootstrap import migrations as feedback_migrations
from regulars_followup.bootstrap import migrations as followup_migrations
from regulars_intake.bootstrap import migrations as intake_migrations
from regulars_loyalty.bootstrap import migrations as loyalty_migrations
from regulars_runtime.db import connect
from regulars_runtime.migrations import Migration, apply

MIGRATIONS: dict[str, list[Migration]] = {
    "intake": intake_migrations(),
    "followup": followup_migrations(),
    "feedback": feedback_migrations(),
    "loyalty": loyalty_migrations(),
}


async def migrate(database_url: str) -> dict[str, list[str]]:
    conn: asyncpg.Connection = await connect(database_url)
    try:
        return {schema: await apply(conn, schema, m) for schema, m in MIGRATIONS.items()}
    finally:
        await conn.close()
