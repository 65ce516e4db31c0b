"""The small adapter between the VEN core (`ven.Ven`) and openleadr's `OpenADRClient` (OpenADR 2.0b,
HTTP pull). The only module of colorgrid that imports openleadr, and only when a VEN starts.

    ven_client = OpenleadrVen(ven, vtn_url="http://127.0.0.1:8080/OpenADR2/Simple/2.0b", ven_name="vpp-1",
                              locations=["671.1", "675.3"], report_s=10)
    await ven_client.start()      # registers (oadrQueryRegistration / oadrCreatePartyRegistration),
                                  # offers the reports, syncs events, then polls at the VTN's frequency
    ...
    await ven_client.stop()

- `on_event` and `on_update_event` both go to `Ven.handle_event`, whose decision's ``optIn`` /
  ``optOut`` openleadr sends back in `oadrCreatedEvent`.
- One TELEMETRY_USAGE report (`report_specifier_id` ``colorgrid-achieved``) with one data point per
  location (`resource_id` = location id, `r_id` ``achieved:<location>``): measurement powerReal in kW
  (unit W, scale k), sampled every `report_s` seconds; each sample is `Ven.report_kw` over the last
  `report_s` (nothing is sent for a sample without rounds).

`OpenadrMissing` says how to install the extra when openleadr is absent.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Sequence

from market.vpp.openadr.ven import Ven

REPORT_SPECIFIER_ID = "colorgrid-achieved"
INSTALL_HINT = "the OpenADR VEN needs the optional extra: pip install 'colorgrid[openadr]' (openleadr 0.5.36)"


class OpenadrMissing(ImportError):
    """openleadr is not installed (the message says how to install it)."""


class VenError(RuntimeError):
    """The VTN could not be reached or refused the registration (the message names the URL)."""


def require_openleadr():
    """The openleadr module, or OpenadrMissing with the install hint."""
    try:
        import openleadr
    except ImportError:
        raise OpenadrMissing(INSTALL_HINT) from None
    return openleadr


class OpenleadrVen:
    """`Ven` behind openleadr's OpenADRClient (module docstring)."""

    def __init__(self, ven: Ven, vtn_url: str, ven_name: str, locations: Sequence[str], report_s: float = 10.0,
                 ven_id: str | None = None):
        if report_s <= 0:
            raise ValueError("report_s must be > 0")
        self.ven, self.vtn_url, self.ven_name = ven, vtn_url, ven_name
        self.locations, self.report_s, self.ven_id = list(locations), float(report_s), ven_id
        self.client = None
        self.reports_sent = 0

    async def start(self) -> None:
        openleadr = require_openleadr()
        logging.getLogger("openleadr").setLevel(logging.WARNING)
        client = openleadr.OpenADRClient(ven_name=self.ven_name, vtn_url=self.vtn_url, allow_jitter=False,
                                         show_fingerprint=False, ven_id=self.ven_id)
        client.add_handler("on_event", self._on_event)
        client.add_handler("on_update_event", self._on_event)
        rate = timedelta(seconds=self.report_s)
        for loc in self.locations:
            client.add_report(callback=partial(self._report, loc), resource_id=loc, measurement="REAL_POWER",
                              unit="W", scale="k", sampling_rate=rate, report_duration=rate,
                              report_specifier_id=REPORT_SPECIFIER_ID, r_id=f"achieved:{loc}")
        self.client = client
        try:
            await client.run()
        except Exception as exc:   # aiohttp errors, a VTN answering something else than OpenADR
            raise VenError(f"{self.vtn_url}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
        if not client.registration_id:
            await self.stop()
            raise VenError(f"{self.vtn_url}: the VTN did not register VEN {self.ven_name!r} "
                           "(unreachable, or it refused the registration)")

    async def stop(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        if client.scheduler.running:
            client.scheduler.shutdown(wait=False)
        if client.report_queue_task:
            client.report_queue_task.cancel()
        if client.client_session is not None:
            await client.client_session.close()
        await asyncio.sleep(0)

    @property
    def registered(self) -> bool:
        return self.client is not None and bool(self.client.registration_id)

    async def _on_event(self, event: dict) -> str:
        now_ms = int(time.time() * 1000)
        decision = self.ven.handle_event(event, now_ms, publish=False)   # here: the yield store's thread
        # in a worker thread: publishing a dispatch waits for the broker's PUBACK
        await asyncio.get_running_loop().run_in_executor(None, self.ven.publish_goals, now_ms)
        return decision.opt

    async def _report(self, location: str):
        now = datetime.now(timezone.utc)
        now_ms = int(now.timestamp() * 1000)
        try:
            kw = self.ven.report_kw(location, now_ms, int(self.report_s * 1000))
        except Exception as exc:   # a fleet-state file being rewritten: skip this sample, say why
            logging.getLogger("colorgrid.vpp.ven").warning("report %s: %s", location, exc)
            return []
        if kw is None:
            return []
        self.reports_sent += 1
        return [(now, float(kw))]
