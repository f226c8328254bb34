"""One HTTP POST of one signal to one webhook, and what its result means.

| result                                   | outcome     | next                              |
|------------------------------------------|-------------|-----------------------------------|
| 2xx                                      | `delivered` | done                              |
| 429, 503                                 | `retry`     | `Retry-After` (seconds or date), else back-off; the whole webhook waits |
| 408, 425, other 5xx                      | `retry`     | back-off                          |
| connection refused/reset, timeout, DNS   | `retry`     | back-off; the whole webhook waits |
| no complete response within `timeout`    | `retry`     | back-off; the whole webhook waits |
| other 4xx, 1xx/3xx, bad URL, TLS setup   | `permanent` | state `failed`, status + body kept |

Errors never contain the URL (it may carry a token): requests' own messages do, so they
are replaced by a short description of what failed.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from rarenet.baseline import __version__
from rarenet.baseline.deliver.deadline import Deadline
from rarenet.baseline.deliver.signing import SIGNATURE_HEADER, sign
from rarenet.baseline.deliver.webhooks import Webhook

DELIVERED, RETRY, PERMANENT = "delivered", "retry", "permanent"
RETRYABLE_4XX = frozenset({408, 425, 429})
BODY_EXCERPT = 300  # bytes of a failing response body kept as the error
USER_AGENT = f"rarenet/{__version__}"
_KNOWN_CAUSES = (
    "Connection refused",
    "Connection reset",
    "Name or service not known",
    "Temporary failure in name resolution",
    "No route to host",
    "Network is unreachable",
    "certificate verify failed",
    "RemoteDisconnected",
    "BadStatusLine",
)


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    kind: str  # delivered | retry | permanent
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds the receiver asked us to wait
    webhook_down: bool = False  # the endpoint as a whole is failing or throttling

    @property
    def delivered(self) -> bool:
        return self.kind == DELIVERED


def headers_for(webhook: Webhook, signal_id: str, body: bytes, attempt: int) -> dict[str, str]:
    """The request headers: configured ones, then rarenet's own (which always win)."""
    headers = dict(webhook.headers)
    headers |= {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": signal_id,
        "X-Rarenet-Attempt": str(attempt),
    }
    if webhook.secret:
        headers[SIGNATURE_HEADER] = sign(webhook.secret, body)
    return headers


def sanitise(text: str, limit: int = BODY_EXCERPT) -> str:
    """Printable, single-line, bounded text for `last_error`."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP-date; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def classify(status: int, body: bytes, retry_after_header: str | None, now: float) -> Outcome:
    """The outcome of an HTTP response."""
    if 200 <= status < 300:
        return Outcome(DELIVERED, status)
    excerpt = sanitise(body[: BODY_EXCERPT * 4].decode("utf-8", "replace"))
    error = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
    if status in (429, 503):
        wait = retry_after(retry_after_header, now)
        return Outcome(RETRY, status, error, retry_after=wait, webhook_down=True)
    if status >= 500 or status in RETRYABLE_4XX:
        return Outcome(RETRY, status, error)
    if 300 <= status < 400:
        error = f"HTTP {status} redirect: set the webhook url to the final address"
    return Outcome(PERMANENT, status, error)


def _describe(exc: requests.RequestException, timeout: float) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return f"connect timed out after {timeout:g}s"
    if isinstance(exc, requests.Timeout):
        return f"no complete response within {timeout:g}s"
    text = str(exc)
    cause = next((c for c in _KNOWN_CAUSES if c in text), None)
    return f"{type(exc).__name__}" + (f": {cause}" if cause else "")


def post(
    session: requests.Session, webhook: Webhook, signal_id: str, body: bytes, attempt: int
) -> Outcome:
    """POST `body` once (no redirects) and classify the result. The webhook's timeout
    bounds the whole attempt — connect, send, response headers and the body excerpt —
    when `session` comes from `deadline_session()`."""
    headers = headers_for(webhook, signal_id, body, attempt)
    with Deadline(webhook.timeout) as deadline:
        outcome = _attempt(session, webhook, headers, body)
    if deadline.expired and outcome.status is None:  # cut off before a status arrived
        return Outcome(
            RETRY, None, f"no complete response within {webhook.timeout:g}s", webhook_down=True
        )
    return outcome


def _attempt(
    session: requests.Session, webhook: Webhook, headers: dict[str, str], body: bytes
) -> Outcome:
    try:
        response = session.post(
            webhook.url,
            data=body,
            headers=headers,
            timeout=webhook.timeout,
            allow_redirects=False,
            stream=True,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        return Outcome(RETRY, None, _describe(exc, webhook.timeout), webhook_down=True)
    except requests.RequestException as exc:  # bad URL, scheme, headers: a config problem
        return Outcome(PERMANENT, None, _describe(exc, webhook.timeout))
    with response:
        try:
            content = response.raw.read(BODY_EXCERPT * 4, decode_content=True) or b""
        except (requests.RequestException, Urllib3Error, OSError, ValueError):
            content = b""  # the status is what counts; a body that fails to arrive is moot
        return classify(
            response.status_code, content, response.headers.get("Retry-After"), time.time()
        )
