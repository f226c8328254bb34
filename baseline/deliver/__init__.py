"""Signal delivery: the outbox, payload formats, signing, the HTTP sender, the job.

`deliver_once(store, config)` is the scheduler's job; `list_signals` and `SignalRecord`
serve `rarenet signals` and `GET /v1/signals`. docs/signals.md documents formats,
headers, signing, retries and states.
"""

from rarenet.baseline.deliver.job import DeliveryReport, deliver_once
from rarenet.baseline.deliver.outbox import (
    DELIVERED,
    STATES,
    DeliveryState,
    SignalRecord,
    get_signal,
    list_signals,
    redeliver,
)

__all__ = [
    "DELIVERED",
    "STATES",
    "DeliveryReport",
    "DeliveryState",
    "SignalRecord",
    "deliver_once",
    "get_signal",
    "list_signals",
    "redeliver",
]
