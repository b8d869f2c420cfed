"""What the orphan sweep counts as claimed, and the proposal a confirmation approves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hiclaw_bot.flows.inventory import ALIAS, CONSUMER, PREFIX, ROUTE, RUNTIME, SYSTEMS, Inventory, Orphan, claims
from hiclaw_bot.flows.worker import subject
from tests.unit.lifecycle.conftest import DOMAIN, Rig, add_worker

orphans = st.builds(Orphan, st.sampled_from(SYSTEMS), st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
                    st.sampled_from(["", "route-a"]))


@given(st.lists(orphans, max_size=8))
def test_a_proposal_survives_params_and_its_digest_ignores_order(found: list[Orphan]) -> None:
    assert [Orphan.from_param(o.as_param()) for o in found] == found
    assert Inventory(list(found)).digest() == Inventory(list(reversed(found))).digest()


def test_a_changed_proposal_has_another_digest() -> None:
    one = Inventory([Orphan(RUNTIME, "ghost")])
    assert one.digest() != Inventory([Orphan(RUNTIME, "ghost"), Orphan(PREFIX, "agents/ghost/")]).digest()


def test_unknown_systems_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown system"):
        Orphan.from_param({"system": "filesystem", "name": "/"})


async def test_live_workers_teams_and_running_operations_claim_their_names(rig: Rig) -> None:
    await add_worker(rig.store, "live")
    await rig.store.teams.upsert("red", leader="live", state="Active")
    creating = await rig.store.ops.insert(kind="worker.create", subject=subject("young"), params={}, actor=None,
                                          room_id=None, source_event_id=None, state="running")
    await rig.store.ledger.record("gateway_consumer", "worker-other", "created", owner=subject("other"),
                                  op_id=creating)
    finished = await rig.store.ops.insert(kind="worker.create", subject=subject("gone"), params={}, actor=None,
                                          room_id=None, source_event_id=None, state="succeeded")
    await rig.store.ledger.record("gateway_consumer", "worker-gone", "created", owner=subject("gone"),
                                  op_id=finished)
    known = await claims(rig.services)
    expected = known.expected(DOMAIN)

    def claimed(orphan: Orphan) -> bool:
        return known.covers(orphan, expected)

    assert claimed(Orphan(ALIAS, f"#hiclaw-worker-live:{DOMAIN}"))
    assert claimed(Orphan(ALIAS, f"#hiclaw-team-red:{DOMAIN}"))
    assert claimed(Orphan(ALIAS, f"#hiclaw-team-red-leader:{DOMAIN}"))
    assert claimed(Orphan(PREFIX, "teams/red/"))
    assert claimed(Orphan(ROUTE, "worker-live", "route-a"))
    assert claimed(Orphan(RUNTIME, "young"))  # its operation runs: its row may not exist yet
    assert claimed(Orphan(CONSUMER, "worker-other"))  # recorded by a running operation
    assert not claimed(Orphan(CONSUMER, "worker-gone"))  # its operation is over and nothing owns it
    assert not claimed(Orphan(ALIAS, f"#hiclaw-worker-gone:{DOMAIN}"))
    assert not claimed(Orphan(PREFIX, "agents/gone/"))
    assert not claimed(Orphan(RUNTIME, "gone"))
