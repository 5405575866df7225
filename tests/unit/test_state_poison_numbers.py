"""A stored state document with a number JSON or a float cannot hold (issue 14, item 4).

``NaN``, ``Infinity`` and ``1e400`` used to decode (plain ``json.loads``) and then fail every later run
when the document was encoded again. Such an object is corrupt: the next run replaces it (rebaseline,
with the reason), publishes its gauges, and the run after that publishes counter increases again.
The document decoder refuses them wherever they are; in the baselines the core's state codec does too.
"""

from __future__ import annotations

import pytest
from cni_metrics.adapters.state_store import DocumentError, StoredObject, decode_document
from test_service import World

POISONED_DATUM = (
    '{"id":"old/alpha","owner":null,"lease_until":null,"collected_at":"2026-11-28T05:59:00+00:00",'
    '"metrics":[["assignIPAddresses",12.0,"Count"],["addReqCount",POISON,"Count"]]}'
)


def poison(body: bytes, where: str, number: str) -> bytes:
    """The stored body with ``number`` (raw JSON text) in an outbox datum or in a pod's baseline."""
    text = body.decode()
    if where == "outbox":
        return text.replace('"outbox":[]', f'"outbox":[{POISONED_DATUM.replace("POISON", number)}]').encode()
    baseline = '"alpha-uid-1":[1795845600000000,0,['
    return text.replace(f"{baseline}0]", f"{baseline}{number}]").encode()


@pytest.mark.parametrize("where", ["outbox", "state"])
@pytest.mark.parametrize(
    "number", ["NaN", "Infinity", "-Infinity", "1e400", pytest.param("1" + "0" * 400, id="401-digit-integer")]
)
def test_a_non_finite_or_huge_number_in_the_stored_document_is_replaced_and_counting_resumes(
    where: str, number: str
) -> None:
    # given a cluster with stored baselines, whose stored document then holds a poisoned number
    world = World("alpha")
    cluster = world.clusters["alpha"]
    world.run()
    stored = world.store.load("alpha")
    assert stored is not None
    poisoned = poison(stored.body, where, number)
    assert poisoned != stored.body
    world.store.objects["alpha"] = StoredObject(poisoned, stored.etag)
    world.clock.advance(60)
    cluster.grow(5)
    # when the next run comes
    replaced = world.outcome(world.run(), "alpha")
    # then it reports the corrupt object with the reason, publishes gauges but no counter increase,
    # and stores a valid document in its place
    assert replaced.status == "rebaselined"
    assert (replaced.error or "").startswith("corrupt state object memory://alpha: ")
    assert world.publisher.values("alpha", "assignIPAddresses") == [12.0, 12.0]
    assert world.publisher.values("alpha", "addReqCount") == []
    after = world.store.load("alpha")
    assert after is not None
    assert decode_document(after.body).outbox == []
    # when the counters grow and the run after that comes
    world.clock.advance(60)
    true_increase = cluster.grow(7)
    resumed = world.outcome(world.run(), "alpha")
    # then it publishes the increase since the replacement exactly
    assert (resumed.status, resumed.state) == ("ok", "updated")
    assert world.publisher.values("alpha", "addReqCount") == [true_increase]
    # and the document decoder itself refuses such a body with the reason
    with pytest.raises(DocumentError, match=r"is not a number|is out of range"):
        decode_document(poisoned)
