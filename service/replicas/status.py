"""The replicas' part of ``recctl status``: who is live, what each holds, what is unowned.

Read from the lease and membership tables on the database's clock, without writing anything
(a status command is not a member).
"""

from __future__ import annotations

from typing import TextIO

import asyncpg

from service.replicas.leases import read_state


async def print_replicas(database_url: str, lease_seconds: float, out: TextIO) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        state = await read_state(conn, lease_seconds)
        now = await conn.fetchval("SELECT now()")
    finally:
        await conn.close()
    held: dict[str, list[int]] = {}
    for lease in state.leases.values():
        if lease.valid and lease.owner is not None:
            held.setdefault(lease.owner, []).append(lease.shard)
    out.write(f"\n{len(state.members)} live replica(s) (lease {lease_seconds:g}s):\n")
    for member in state.members:
        ago = (now - member.heartbeat_at).total_seconds()
        shards = held.get(member.id, [])
        tokens = [state.leases[s].token for s in shards]
        top = f", tokens up to {max(tokens)}" if tokens else ""
        out.write(
            f"  {member.id}  heartbeat {ago:.1f}s ago  {len(shards)} shard(s){top}\n"
        )
    orphaned = sorted(s for s, lease in state.leases.items() if not lease.valid)
    if orphaned:
        out.write(f"  {len(orphaned)} shard(s) held by nobody now: {orphaned}\n")


async def live_replicas(database_url: str, lease_seconds: float) -> list[str]:
    """The ids of the replicas with a live heartbeat."""
    conn = await asyncpg.connect(database_url)
    try:
        state = await read_state(conn, lease_seconds)
    finally:
        await conn.close()
    return [m.id for m in state.members]
