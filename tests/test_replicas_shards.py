"""Shard assignment: stable keys, rendezvous hashing, and how little moves on a change."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from service.replicas.shards import SHARDS, assignment, owner_of, shard_of, wanted_by

members = st.sets(st.text("abcdef0123456789-", min_size=1, max_size=12), min_size=1, max_size=6)


def test_a_key_falls_in_the_same_shard_in_every_process() -> None:
    """Python's own ``hash`` is salted per process: the shard must not be."""
    keys = ["acme/room-1", "channel:agora/room-1", "globex/x"]
    code = f"from service.replicas.shards import shard_of;print([shard_of(k) for k in {keys!r}])"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert other.stdout.strip() == str([shard_of(k) for k in keys])
    assert all(0 <= shard_of(k) < SHARDS for k in keys)


def test_keys_spread_over_every_shard() -> None:
    counts = [0] * SHARDS
    for i in range(6400):
        counts[shard_of(f"acme/room-{i}")] += 1
    assert min(counts) > 50 and max(counts) < 150  # about 100 each


@given(members)
def test_every_shard_has_exactly_one_owner_among_the_members(names: set[str]) -> None:
    owners = assignment(names)
    assert set(owners) == set(range(SHARDS))
    assert set(owners.values()) <= names
    wanted = [wanted_by(m, names) for m in names]
    assert sum(len(w) for w in wanted) == SHARDS  # disjoint and complete
    assert frozenset().union(*wanted) == frozenset(range(SHARDS))


@given(members, st.text("xyz", min_size=1, max_size=5))
def test_a_joining_replica_takes_shards_only_for_itself(names: set[str], new: str) -> None:
    """Rendezvous hashing: a join moves shards to the newcomer and nowhere else."""
    before, after = assignment(names), assignment(names | {new})
    moved = {s for s in range(SHARDS) if before[s] != after[s]}
    assert all(after[s] == new for s in moved)


@given(members)
def test_a_leaving_replica_gives_up_only_its_own_shards(names: set[str]) -> None:
    gone = sorted(names)[0]
    rest = names - {gone}
    before, after = assignment(names), assignment(rest)
    for shard in range(SHARDS):
        if before[shard] != gone:
            assert after.get(shard) == before[shard]


def test_three_replicas_get_near_equal_shares() -> None:
    names = [f"host-{i}-abcdef" for i in range(3)]
    shares = sorted(len(wanted_by(m, names)) for m in names)
    assert sum(shares) == SHARDS and shares[0] >= 10, shares


def test_no_members_no_owner() -> None:
    assert owner_of(3, []) is None
    assert assignment([]) == {}
