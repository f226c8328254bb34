"""The triage console's routes inside `rarenet serve` (docs/operations.md#console).

Pages are rendered on the server from Jinja2 templates with autoescape; no script runs
in them (the CSP forbids it), plots are inline SVG. Reading a page needs a session:
with tokens configured, one is entered once at /login; without tokens (loopback only)
a session is opened on the first visit. Every POST needs the session's CSRF token and
a same-origin `Origin` when the browser sends one; a request with a valid
`Authorization: Bearer` token may use the pages and actions without a session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from rarenet.baseline.config import Config
from rarenet.baseline.console import pages, plots, views
from rarenet.baseline.console.render import STATIC, render
from rarenet.baseline.console.session import COOKIE, Session, Sessions
from rarenet.baseline.deliver.outbox import STATES, get_signal, redeliver
from rarenet.baseline.deliver.webhooks import configured_webhooks
from rarenet.baseline.detect.exceptions import Exception_, add_exception
from rarenet.baseline.errors import InputError
from rarenet.baseline.store import Store
from rarenet.baseline.tokens import presented_token, token_ok
from rarenet.baseline.units import parse_duration, parse_time

MAX_FORM = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would send `Origin: null` on our own forms
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


class Refused(Exception):
    """A request the console answers with an error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Console:
    """The console's routes for one server."""

    def __init__(
        self,
        config: Config,
        open_store: Callable[[], Store],
        *,
        tokens: Sequence[str],
        gate: threading.Lock | None = None,
        failures: Callable[[], list[dict[str, Any]]] = list,
    ) -> None:
        self.config = config
        self.open_store = open_store
        self.tokens = list(tokens)
        self.gate = gate
        self.failures = failures
        self.sessions = Sessions()
        self.webhooks = [hook.name for hook in configured_webhooks(config)]
        self.css = (STATIC / "console.css").read_bytes()

    def routes(self) -> list[Route]:
        page = self._page
        return [
            Route("/", page(self.signals), methods=["GET"]),
            Route("/signals", page(self.signals), methods=["GET"]),
            Route("/signals/{sid}", page(self.signal), methods=["GET"]),
            Route("/signals/{sid}/allow", page(self.allow_form), methods=["GET"]),
            Route("/signals/{sid}/acknowledge", self._action(self.acknowledge), methods=["POST"]),
            Route("/signals/{sid}/redeliver", self._action(self.redeliver), methods=["POST"]),
            Route("/exceptions", self._action(self.add_exception), methods=["POST"]),
            Route("/host", page(self.host), methods=["GET"]),
            Route("/binary", page(self.binary), methods=["GET"]),
            Route("/health", page(self.health), methods=["GET"]),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self._action(self.logout), methods=["POST"]),
            Route("/static/console.css", self.stylesheet, methods=["GET"]),
        ]

    # -- sessions ------------------------------------------------------------------------

    def _bearer_ok(self, request: Request) -> bool:
        token = presented_token(request.headers.get("authorization"), None)
        return token is not None and bool(self.tokens) and token_ok(self.tokens, token)

    def _session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def _set_cookie(self, response: Response, request: Request, session: Session) -> None:
        secure = request.url.scheme == "https" or (
            request.headers.get("x-forwarded-proto", "").lower() == "https"
        )
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=int(self.sessions.ttl),
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure,
        )

    def _page(self, build: Callable[[Request, Session | None], Any]) -> Handler:
        """A GET page: a session (or bearer token) first, then the page built off-loop."""

        async def handler(request: Request) -> Response:
            session = self._session(request)
            fresh = None
            if session is None and not self._bearer_ok(request):
                if self.tokens:
                    target = request.url.path + (
                        f"?{request.url.query}" if request.url.query else ""
                    )
                    return _secure(
                        RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
                    )
                session = fresh = self.sessions.create()  # loopback only: no token to ask for
            try:
                body = await run_in_threadpool(build, request, session)
            except Refused as exc:
                body, status = self._error_page(exc, session), exc.status
            else:
                status = 200
            response = _secure(HTMLResponse(body, status_code=status))
            if fresh is not None:
                self._set_cookie(response, request, fresh)
            return response

        return handler

    def _action(self, act: Callable[[Request, dict[str, str]], str]) -> Handler:
        """A POST: same origin, a session with its CSRF token (or a bearer token); then
        `act` runs off-loop and returns where to go next (303)."""

        async def handler(request: Request) -> Response:
            session = self._session(request)
            try:
                form = await _form(request)
                if not self._bearer_ok(request):
                    if not _same_origin(request):
                        raise Refused(403, "cross-origin form refused")
                    if session is None:
                        raise Refused(403, "no session: open the console and sign in first")
                    if not session.csrf_ok(form.get("csrf")):
                        raise Refused(403, "missing or wrong CSRF token: reload the page and retry")
                request.state.session = session
                target = await run_in_threadpool(act, request, form)
            except Refused as exc:
                body = self._error_page(exc, session)
                return _secure(HTMLResponse(body, status_code=exc.status))
            return _secure(RedirectResponse(target, status_code=303))

        return handler

    def _error_page(self, exc: Refused, session: Session | None) -> str:
        return render("error.html", session=session, status=exc.status, message=exc.message)

    async def login_page(self, request: Request) -> Response:
        if not self.tokens:
            return _secure(RedirectResponse("/", status_code=303))
        target = _local(request.query_params.get("next", "/"))
        return _secure(HTMLResponse(render("login.html", session=None, next=target, error="")))

    async def login(self, request: Request) -> Response:
        try:
            form = await _form(request)
            if not _same_origin(request):
                raise Refused(403, "cross-origin form refused")
        except Refused as exc:
            return _secure(HTMLResponse(self._error_page(exc, None), status_code=exc.status))
        target = _local(form.get("next", "/"))
        if not self.tokens:
            return _secure(RedirectResponse(target, status_code=303))
        if not token_ok(self.tokens, form.get("token", "").strip() or None):
            body = render("login.html", session=None, next=target, error="wrong token")
            return _secure(HTMLResponse(body, status_code=401))
        session = self.sessions.create()
        response = _secure(RedirectResponse(target, status_code=303))
        self._set_cookie(response, request, session)
        return response

    def logout(self, request: Request, _form: dict[str, str]) -> str:
        self.sessions.end(request.cookies.get(COOKIE))
        return "/login" if self.tokens else "/"

    async def stylesheet(self, _request: Request) -> Response:
        headers = {**SECURITY_HEADERS, "Cache-Control": "max-age=3600"}
        return Response(self.css, media_type="text/css", headers=headers)

    # -- pages ---------------------------------------------------------------------------

    def signals(self, request: Request, session: Session | None) -> str:
        try:
            filters = views.SignalFilter.parse(dict(request.query_params))
        except InputError as exc:
            raise Refused(400, str(exc)) from None
        with self.open_store() as store:
            page = views.signals_page(store, filters)
        return render(
            "signals.html",
            session=session,
            page=page,
            webhooks=self.webhooks,
            states=("none", *STATES),
        )

    def signal(self, request: Request, session: Session | None) -> str:
        sid = request.path_params["sid"]
        with self.open_store() as store:
            try:
                view = pages.signal_view(store, self.config, sid, gate=self.gate)
            except InputError as exc:
                raise Refused(404, str(exc)) from None
        return render(
            "signal.html",
            session=session,
            view=view,
            flash=request.query_params.get("done", "")[:200],
            webhooks=self.webhooks,
        )

    def allow_form(self, request: Request, session: Session | None) -> str:
        with self.open_store() as store:
            record = _signal(store, request.path_params["sid"])
        form = pages.allow_form(record)
        return render("allow.html", session=session, form=form, record=record, error="")

    def host(self, request: Request, session: Session | None) -> str:
        name = request.query_params.get("name", "").strip()
        if not 0 < len(name) <= 255:
            raise Refused(400, "name the host: /host?name=HOST (1 to 255 characters)")
        with self.open_store() as store:
            page = views.host_page(store, self._span(), name)
        return render("host.html", session=session, page=page, plot=pages.host_plot(page))

    def binary(self, request: Request, session: Session | None) -> str:
        key = request.query_params.get("key", "").strip()
        if not 0 < len(key) <= 4096:
            raise Refused(400, "name the binary: /binary?key=PATH-or-NAME")
        with self.open_store() as store:
            page = views.binary_page(store, self._span(), int(self.config.detect.history), key)
        return render("binary.html", session=session, page=page, plot=pages.binary_plot(page))

    def health(self, _request: Request, session: Session | None) -> str:
        settings = self.config.detect
        with self.open_store() as store:
            page = views.health_page(store, self._span(), settings.warmup_buckets)
        return render(
            "health.html",
            session=session,
            page=page,
            problems=self.failures(),
            plot=plots.hourly_svg(page.hourly),
            now=time.time(),
        )

    def _span(self) -> int:
        return max(1, int(self.config.detect.bucket_span))

    # -- actions -------------------------------------------------------------------------

    def acknowledge(self, request: Request, _form: dict[str, str]) -> str:
        with self.open_store() as store:
            record = _signal(store, request.path_params["sid"])
            views.acknowledge(store, record.id, time.time())
        return f"/signals/{record.id}?done=acknowledged"

    def redeliver(self, request: Request, form: dict[str, str]) -> str:
        names = self.webhooks
        only = form.get("webhook") or None
        with self.open_store() as store:
            record = _signal(store, request.path_params["sid"])
            try:
                queued = redeliver(store, record.id, names, now=time.time(), only=only)
            except InputError as exc:
                raise Refused(400, str(exc)) from None
        return (
            f"/signals/{record.id}?{urlencode({'done': 'queued again for ' + ', '.join(queued)})}"
        )

    def add_exception(self, _request: Request, form: dict[str, str]) -> str:
        with self.open_store() as store:
            record = _signal(store, form.get("signal", ""))
            try:
                entry = exception_from_form(form, time.time())
                number = add_exception(store, entry)
            except InputError as exc:
                raise Refused(400, str(exc)) from None
        done = f"exception #{number} created: {entry.describe()}"
        return f"/signals/{record.id}?{urlencode({'done': done})}"


def exception_from_form(form: dict[str, str], now: float) -> Exception_:
    """The "allow this" form as an exception; InputError names the field that is wrong."""

    def text(key: str, limit: int = 1024) -> str | None:
        value = form.get(key, "").strip()
        if len(value) > limit:
            raise InputError(f"at most {limit} characters", where=key)
        return value or None

    reason = text("reason", 500)
    if reason is None:
        raise InputError("say why this is allowed (it is shown on every match)", where="reason")
    port_text = text("port", 5)
    port = None
    if port_text is not None:
        if not port_text.isdigit():
            raise InputError(f"{port_text!r} is not a port", where="port")
        port = int(port_text)
    expires = text("expires", 40)
    expires_at = None
    if expires is not None:
        try:
            expires_at = int(now + parse_duration(expires))
        except (ValueError, InputError):
            try:
                expires_at = parse_time(expires)
            except (ValueError, OverflowError):
                raise InputError(
                    f"{expires!r} is neither a duration (30d) nor a time", where="expires"
                ) from None
    return Exception_(
        id=0,
        name=text("name"),
        path_glob=text("path"),
        host=text("host"),
        user=text("user"),
        cidr=text("cidr", 64),
        port=port,
        expires_at=expires_at,
        reason=reason,
    )


def _signal(store: Store, sid: str) -> Any:
    try:
        return get_signal(store, sid)
    except InputError as exc:
        raise Refused(404, str(exc)) from None


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body (at most MAX_FORM bytes)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("", "application/x-www-form-urlencoded"):
        raise Refused(415, "send the form urlencoded")
    body = b""
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_FORM:
            raise Refused(413, f"form over {MAX_FORM} bytes")
    text = body.decode("utf-8", "replace")
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=50))


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser form post, or an old browser: the CSRF token decides
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _local(target: str) -> str:
    """A redirect target on this server only (`/…`, never `//host` or a scheme)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:2000]


def _secure(response: Response) -> Response:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response
