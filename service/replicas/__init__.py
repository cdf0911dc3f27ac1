"""Several ``recctl serve`` replicas on one PostgreSQL database: who reconciles which room.

Rooms fall into a fixed number of shards (:mod:`.shards`); the live replicas share the shards
by rendezvous hashing; each shard is held under a lease with a fencing token (:mod:`.leases`),
renewed by its owner and taken over after it expires. Every intent a pass appends carries the
token, and the store refuses a stale one in the append's own transaction: a replica that was
paused past its lease cannot act. See ``docs/high-availability.md``.
"""
