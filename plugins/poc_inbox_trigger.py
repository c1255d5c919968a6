"""Event trigger for the PoC inbox: a dropped NAME_train.csv becomes an asset event.

Used by dags/poc_automl.py as `Asset(..., watchers=[AssetWatcher(trigger=PocInboxTrigger(...))])`:
the triggerer runs `run()` for as long as the asset is watched; each settled drop is
claimed (moved into the inbox's claimed/ folder, so it fires once) and yielded as a
`TriggerEvent` whose payload ({name, train, test, options}) Airflow stores on the asset
event that schedules the `poc_automl` run. It lives in plugins/ because the triggerer
imports triggers by class path and puts the plugins folder (not the DAGs folder) on
sys.path. The file logic is automl_tasks.poc.inbox (no Airflow there).

The standard provider's file event triggers do not fit: they watch one fixed file name
and delete it, and a PoC's NAME is only known when the file lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


class PocInboxTrigger(BaseEventTrigger):
    """Fire once per drop of NAME_train.csv (with NAME_test.csv / NAME_poc.json) into `inbox`."""

    def __init__(self, inbox: str, poke_interval: float = 10.0, settle_s: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        self.inbox, self.poke_interval, self.settle_s = inbox, poke_interval, settle_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("poc_inbox_trigger.PocInboxTrigger",
                {"inbox": self.inbox, "poke_interval": self.poke_interval, "settle_s": self.settle_s})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from automl_tasks.poc.inbox import claim_settled

        while True:
            # File moves block: run them off the triggerer's event loop.
            for payload in await asyncio.to_thread(claim_settled, self.inbox, self.settle_s):
                self.log.info("PoC drop %s claimed: %s", payload["name"], payload)
                yield TriggerEvent(payload)
            await asyncio.sleep(self.poke_interval)
