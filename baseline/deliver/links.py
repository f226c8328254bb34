"""Links out of a delivered signal: back to its page in the console (`[server]
public_url`) and to its host in Fleet (`[server] fleet_url`), so a Slack message or a
SIEM alert is one click from the evidence. Built at delivery from the configuration,
never stored: a changed address applies to every signal still queued."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from rarenet.baseline.config import Config


@dataclass(frozen=True)
class Links:
    """Where a signal's links point: the console and Fleet (empty: no link)."""

    console: str = ""
    fleet: str = ""

    @classmethod
    def from_config(cls, config: Config) -> Links:
        return cls(config.server.public_url, config.server.fleet_url)

    def signal(self, signal_id: str) -> str | None:
        """The signal's page in the console."""
        base = self.console.rstrip("/")
        return f"{base}/signals/{quote(signal_id, safe='')}" if base else None

    def fleet_host(self, host: str, host_uuid: str | None) -> str | None:
        """Fleet's hosts page searched for the host (its UUID when known: unique)."""
        base = self.fleet.rstrip("/")
        if not base or not (host_uuid or host):
            return None
        return f"{base}/hosts/manage?query={quote(host_uuid or host, safe='')}"

    def of(self, document: dict[str, Any]) -> dict[str, str | None]:
        """A signal document's `links`: {signal, fleet_host}."""
        found = document.get("host")
        host: dict[str, Any] = found if isinstance(found, dict) else {}
        return {
            "signal": self.signal(str(document.get("id") or "")),
            "fleet_host": self.fleet_host(
                str(host.get("name") or ""), str(host.get("id") or "") or None
            ),
        }


NO_LINKS = Links()
