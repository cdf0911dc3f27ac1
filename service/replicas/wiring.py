"""Settings to a running replica: its pool, its lease loop and the shared provider pacers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from prometheus_client import CollectorRegistry

from service.config import Settings
from service.replicas.pacer import SharedPacer, pacer_rate
from service.replicas.replica import Replica

#: The replica's own connections: the lease loop, the pacers and NOTIFY (LISTEN has its own).
POOL_SIZE = 4


def is_postgres(url: str) -> bool:
    return url.partition(":")[0].lower() in ("postgres", "postgresql")


@dataclass
class Replicas:
    replica: Replica
    agora_pacer: SharedPacer
    cloudflare_pacer: SharedPacer | None


@asynccontextmanager
async def replicas_of(settings: Settings, registry: CollectorRegistry) -> AsyncIterator[Replicas]:
    """Join the replicas of ``settings.database_url``; leave (leases given back) on exit."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=POOL_SIZE)
    try:
        agora = SharedPacer(
            pool, f"agora:{settings.agora_app_id}", pacer_rate(settings.agora_rate_limit_qps)
        )
        await agora.setup()
        cloudflare = None
        if settings.cloudflare_configured:
            cloudflare = SharedPacer(
                pool,
                f"cloudflare:{settings.cloudflare_account_id}",
                pacer_rate(settings.cloudflare_rate_limit_qps),
            )
            await cloudflare.setup()
        replica = Replica(pool, settings.database_url, settings.lease_seconds, registry)
        await replica.start()
        try:
            yield Replicas(replica, agora, cloudflare)
        finally:
            await replica.stop()
    finally:
        await pool.close()
