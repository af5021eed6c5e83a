"""Per-ModelDeployment state (handlers/tracked.py): made and forgotten together; forgetting an
object whose reconcile runs keeps its lock until that reconcile ends."""

from __future__ import annotations

import asyncio

from modelops_operator.handlers.tracked import TrackedObjects

KEY = ("ml", "resnet")


def body(version: str = "1") -> dict[str, object]:
    return {"metadata": {"namespace": "ml", "name": "resnet", "resourceVersion": version}}


def test_seen_then_forgotten_leaves_nothing() -> None:
    objects = TrackedObjects()
    tracked = objects.seen(KEY, body())
    tracked.status, tracked.failures, tracked.netted = {"phase": "Ready"}, 2, True
    assert KEY in objects
    assert len(objects) == 1
    assert objects.get(KEY) is tracked
    objects.forget(KEY)
    assert KEY not in objects
    assert objects.get(KEY) is None
    assert len(objects) == 0
    again = objects.seen(KEY, body("2"))
    assert again is not tracked
    assert (again.status, again.failures, again.netted, again.handled) == (None, 0, False, None)


def test_latest_prefers_the_status_this_process_wrote() -> None:
    objects = TrackedObjects()
    tracked = objects.seen(KEY, {**body(), "status": {"phase": "Pending"}})
    tracked.status = {"phase": "Ready"}
    latest = tracked.latest()
    assert latest is not None
    assert latest["status"] == {"phase": "Ready"}
    objects.forget_statuses()
    latest = tracked.latest()
    assert latest is not None
    assert latest["status"] == {"phase": "Pending"}


async def test_forget_during_a_reconcile_keeps_its_lock() -> None:
    objects = TrackedObjects()
    objects.seen(KEY, body())
    inside, leave = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def reconcile(name: str) -> None:
        async with objects.locked(KEY):
            order.append(f"{name} in")
            inside.set()
            await leave.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(reconcile("first"))
    await inside.wait()
    objects.forget(KEY)
    assert KEY not in objects
    # Created again under the same name while the first reconcile still runs.
    objects.seen(KEY, body("2"))
    inside.clear()
    second = asyncio.create_task(reconcile("second"))
    await asyncio.sleep(0.01)
    assert order == ["first in"], "a second reconcile ran beside the first"
    leave.set()
    await asyncio.gather(first, second)
    assert order == ["first in", "first out", "second in", "second out"]
    assert KEY in objects


async def test_an_object_forgotten_during_its_reconcile_goes_when_it_ends() -> None:
    objects = TrackedObjects()
    objects.seen(KEY, body())
    async with objects.locked(KEY) as tracked:
        objects.forget(KEY)
        assert tracked.forgotten
        assert tracked.body is None
    assert objects.get(KEY) is None
    # A reconcile of a never-seen object leaves nothing behind either.
    async with objects.locked(("ml", "other")):
        pass
    assert len(objects) == 0
    assert objects.get(("ml", "other")) is None
