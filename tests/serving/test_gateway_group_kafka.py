"""The consumer group a gateway joins, as docs/architecture.md names it: one group per set
of pipelines served, named after them all."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient

from streamdag.pipeline import compile_plan, parse_spec
from streamdag.serving import KafkaGateway

pytestmark = pytest.mark.kafka


def _plan(name: str) -> dict[str, object]:
    return {
        "name": name,
        "partitions": 2,
        "models": {"m": {"runtime": "python", "handler": "builtins:print"}},
        "steps": [{"name": "s", "model": "m"}],
    }


def _groups(bootstrap: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups(request_timeout=10).result()
    return {g.group_id for g in listed.valid}


def test_a_gateway_of_two_pipelines_joins_the_group_named_after_both(
    bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    b, a = unique_name("b"), unique_name("a")
    plans = [compile_plan(parse_spec(_plan(n))) for n in (b, a)]

    async def joined() -> set[str]:
        gateway = KafkaGateway(plans, bootstrap)
        await gateway.start()
        try:
            return await asyncio.to_thread(_groups, bootstrap)
        finally:
            await gateway.stop()

    groups = asyncio.run(joined())
    assert f"streamdag.{a}+{b}.gateway" in groups
    assert f"streamdag.{a}.gateway" not in groups and f"streamdag.{b}.gateway" not in groups
