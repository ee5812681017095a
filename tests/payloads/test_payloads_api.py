"""The public surface of streamdag.payloads."""

from __future__ import annotations

import streamdag.payloads


def test_public_api_is_locked() -> None:
    assert sorted(streamdag.payloads.__all__) == [
        "DEFAULT_INLINE_MAX_BYTES",
        "PayloadRef",
        "PayloadStore",
        "effective_retention_s",
        "start_sweeper",
        "store_from_settings",
        "stub_value",
    ]
