"""The triage console's routes inside `rarenet serve` (docs/operations.md#console).

Pages are rendered on the server from Jinja2 templates with autoescape; no script runs
in them (the CSP forbids it), plots are inline SVG. People sign in as themselves (a
named user with a role, baseline/access); a page needs a session, a personal API token
(`Authorization: Bearer rnu_…`) or a trusted proxy's user header. The ingest, snapshot,
shard and metrics secrets open none of it. Every POST needs the session's CSRF token and
a same-origin `Origin` when the browser sends one (a personal token needs neither), the
role the action requires, and is recorded in the audit trail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from rarenet.baseline import triage
from rarenet.baseline.access.audit import list_audit, record, record_now
from rarenet.baseline.access.credentials import Credentials
from rarenet.baseline.access.gate import Gatekeeper, Identified, peer_of
from rarenet.baseline.access.limiter import SigninLimiter
from rarenet.baseline.access.roles import Principal
from rarenet.baseline.access.users import count_users, verify_password
from rarenet.baseline.config import Config
from rarenet.baseline.console import inventory, pages, plots, views
from rarenet.baseline.console.render import STATIC, render
from rarenet.baseline.console.session import COOKIE, Session, Sessions
from rarenet.baseline.deliver.outbox import STATES, get_signal, redeliver
from rarenet.baseline.deliver.webhooks import configured_webhooks
from rarenet.baseline.detect.exceptions import (
    Exception_,
    add_exception,
    list_exceptions,
    remove_exception,
)
from rarenet.baseline.errors import InputError
from rarenet.baseline.store import Store
from rarenet.baseline.units import parse_expiry

MAX_FORM = 64 * 1024
MAX_BULK_GROUPS = 200  # rows one bulk action may name
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
Page = Callable[[Request, Session | None, Principal], "str | dict[str, Any]"]
Action = Callable[[Request, dict[str, str], Principal], str]


class Refused(Exception):
    """A request the console answers with an error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Redisplay(Exception):
    """A form sent back to its page with what was typed and what is wrong (not a bare
    error page that loses the form): `page(session)` renders it."""

    def __init__(self, status: int, page: Callable[[Session | None], str]) -> None:
        super().__init__(status)
        self.status = status
        self.page = page


class Console:
    """The console's routes for one server."""

    def __init__(
        self,
        config: Config,
        open_store: Callable[[], Store],
        *,
        credentials: Credentials,
        gate: threading.Lock | None = None,
        failures: Callable[[], list[dict[str, Any]]] = list,
    ) -> None:
        self.config = config
        self.open_store = open_store
        self.gate = gate
        self.failures = failures
        self.sessions = Sessions()
        self.keeper = Gatekeeper(credentials, open_store, self.sessions)
        self.limiter = SigninLimiter()
        self.webhooks = [hook.name for hook in configured_webhooks(config)]
        self.css = (STATIC / "console.css").read_bytes()

    def routes(self) -> list[Route]:
        page, action = self._page, self._action
        return [
            Route("/", page(self.signals), methods=["GET"]),
            Route("/signals", page(self.signals), methods=["GET"]),
            Route("/signals/{sid}", page(self.signal), methods=["GET"]),
            Route("/signals/{sid}/allow", page(self.allow_form, "add_exception"), methods=["GET"]),
            Route(
                "/signals/{sid}/acknowledge",
                action(self.acknowledge, "acknowledge"),
                methods=["POST"],
            ),
            Route(
                "/signals/{sid}/redeliver", action(self.redeliver, "redeliver"), methods=["POST"]
            ),
            Route("/signals/{sid}/assign", action(self.assign, "acknowledge"), methods=["POST"]),
            Route("/signals/{sid}/close", action(self.close, "acknowledge"), methods=["POST"]),
            Route("/signals/{sid}/comment", action(self.comment, "acknowledge"), methods=["POST"]),
            Route("/signals/bulk", action(self.bulk, "acknowledge"), methods=["POST"]),
            Route("/exceptions", page(self.exceptions), methods=["GET"]),
            Route("/hosts", page(self.hosts), methods=["GET"]),
            Route("/binaries", page(self.binaries), methods=["GET"]),
            Route("/webhooks", page(self.webhook_page), methods=["GET"]),
            Route("/exceptions", action(self.add_exception, "add_exception"), methods=["POST"]),
            Route(
                "/exceptions/{eid:int}/remove",
                action(self.remove_exception, "remove_exception"),
                methods=["POST"],
            ),
            Route("/audit", page(self.audit, "read_audit"), methods=["GET"]),
            Route("/host", page(self.host), methods=["GET"]),
            Route("/binary", page(self.binary), methods=["GET"]),
            Route("/health", page(self.health), methods=["GET"]),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", action(self.logout, "sign_out"), methods=["POST"]),
            Route("/static/console.css", self.stylesheet, methods=["GET"]),
        ]

    # -- who is asking -------------------------------------------------------------------

    async def identify(self, request: Request) -> Identified:
        """Who is asking (also for the API's person routes, e.g. GET /v1/signals)."""
        return await run_in_threadpool(self.keeper.identify, request)

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

    def _page(self, build: Page, needs: str = "read") -> Handler:
        """A GET page: who is asking first (else the sign-in page), their role, then the
        page built off-loop."""

        async def handler(request: Request) -> Response:
            found = await self.identify(request)
            if found.refused is not None:
                status, message = found.refused
                return self._refused_page(Refused(status, message), None, None)
            who = found.who
            if who is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return _secure(
                    RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
                )
            session = found.session
            try:
                if not who.can(needs):
                    raise Refused(403, _not_allowed(who, needs))
                body = await run_in_threadpool(build, request, session, who)
            except Refused as exc:
                if _wants_json(request):
                    return _secure(JSONResponse({"error": exc.message}, status_code=exc.status))
                body, status = self._error_page(exc, session, who), exc.status
            else:
                status = 200
            response: Response = _secure(
                JSONResponse(body)
                if isinstance(body, dict)
                else HTMLResponse(body, status_code=status)
            )
            if found.fresh and session is not None:
                self._set_cookie(response, request, session)
            return response

        return handler

    def _action(self, act: Action, needs: str) -> Handler:
        """A POST: who is asking; a session's form needs the same origin and its CSRF
        token (a personal API token needs neither); the role `needs`; then `act` runs
        off-loop and returns where to go next (303)."""

        async def handler(request: Request) -> Response:
            found = await self.identify(request)
            session, who = found.session, found.who
            try:
                if found.refused is not None:
                    raise Refused(*found.refused)
                form = await _form(request)
                if who is None:
                    raise Refused(403, "not signed in: open the console and sign in first")
                if who.via != "token":
                    if not _same_origin(request):
                        raise Refused(403, "cross-origin form refused")
                    if session is None or found.fresh:
                        raise Refused(403, "no session: open the console and sign in first")
                    if not session.csrf_ok(form.get("csrf")):
                        raise Refused(403, "missing or wrong CSRF token: reload the page and retry")
                if not who.can(needs):
                    raise Refused(403, _not_allowed(who, needs))
                target = await run_in_threadpool(act, request, form, who)
            except Refused as exc:
                return self._refused_page(exc, session, who)
            except Redisplay as shown:
                return _secure(HTMLResponse(shown.page(session), status_code=shown.status))
            return _secure(RedirectResponse(target, status_code=303))

        return handler

    def _refused_page(
        self, exc: Refused, session: Session | None, who: Principal | None
    ) -> Response:
        body = self._error_page(exc, session, who)
        return _secure(HTMLResponse(body, status_code=exc.status))

    def _error_page(self, exc: Refused, session: Session | None, who: Principal | None) -> str:
        return render("error.html", session=session, me=who, status=exc.status, message=exc.message)

    # -- signing in ----------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        target = _local(request.query_params.get("next", "/"))
        users = await run_in_threadpool(self._count_users)
        body = render("login.html", session=None, me=None, next=target, error="", users=users)
        return _secure(HTMLResponse(body))

    def _count_users(self) -> int:
        with self.open_store() as store:
            return count_users(store)

    async def login(self, request: Request) -> Response:
        try:
            form = await _form(request)
            if not _same_origin(request):
                raise Refused(403, "cross-origin form refused")
        except Refused as exc:
            return self._refused_page(exc, None, None)
        target = _local(form.get("next", "/"))
        name = form.get("user", "").strip()[:100]
        password = form.get("password", "")
        status, error, who = await run_in_threadpool(
            self._sign_in, name, password, peer_of(request)
        )
        if who is None:
            users = await run_in_threadpool(self._count_users)
            body = render(
                "login.html", session=None, me=None, next=target, error=error, users=users
            )
            return _secure(HTMLResponse(body, status_code=status))
        session = self.sessions.create(who=who)
        response = _secure(RedirectResponse(target, status_code=303))
        self._set_cookie(response, request, session)
        return response

    def _sign_in(self, name: str, password: str, peer: str) -> tuple[int, str, Principal | None]:
        """(status, error, who): rate-limited per account and per address; failures and
        locks are audited."""
        attempt = Principal(name or "(empty)", "viewer", "password", peer)
        wait = self.limiter.locked_for(name, peer)
        if wait > 0:
            minutes = max(1, round(wait / 60))
            return 429, f"too many failed sign-ins: try again in {minutes} min", None
        with self.open_store() as store:
            user = verify_password(store, name, password) if name and password else None
            if user is None:
                locked = self.limiter.failed(name, peer)
                record_now(store, attempt, "signin.failed", f"user:{name}")
                if locked:
                    record_now(store, attempt, "signin.locked", f"user:{name}",
                               summary=f"{self.limiter.max_failures} failures")  # fmt: skip
                return 401, "wrong user name or password", None
            self.limiter.succeeded(name, peer)
            who = Principal(user.name, user.role, "session", peer)
            record_now(store, who, "signin", f"user:{user.name}")
        self.keeper.forget_open_mode()
        return 200, "", who

    def logout(self, request: Request, _form: dict[str, str], _who: Principal) -> str:
        self.sessions.end(request.cookies.get(COOKIE))
        return "/login"

    async def stylesheet(self, _request: Request) -> Response:
        headers = {**SECURITY_HEADERS, "Cache-Control": "max-age=3600"}
        return Response(self.css, media_type="text/css", headers=headers)

    # -- pages ---------------------------------------------------------------------------

    def signals(
        self, request: Request, session: Session | None, who: Principal
    ) -> str | dict[str, Any]:
        asked = {k: v for k, v in request.query_params.items() if k not in ("format", "done")}
        try:
            filters = views.SignalFilter.parse(asked)
        except InputError as exc:
            raise Refused(400, str(exc)) from None
        with self.open_store() as store:
            page = views.signals_page(store, filters)
            learning = views.learning_state(store, self._span(), self.config.detect.warmup_buckets)
        if _wants_json(request):
            return views.signals_json(page, learning)
        return render(
            "signals.html",
            session=session,
            me=who,
            page=page,
            learning=learning,
            webhooks=self.webhooks,
            states=("none", *STATES),
            flash=request.query_params.get("done", "")[:300],
            shown_at=time.time(),
            back=_local(request.url.path + (f"?{request.url.query}" if request.url.query else "")),
        )

    def signal(self, request: Request, session: Session | None, who: Principal) -> str:
        sid = request.path_params["sid"]
        with self.open_store() as store:
            try:
                view = pages.signal_view(store, self.config, sid, gate=self.gate)
            except InputError as exc:
                raise Refused(404, str(exc)) from None
            trail = list_audit(store, target=f"signal:{view.record.id}", limit=50)
        return render(
            "signal.html",
            session=session,
            me=who,
            view=view,
            trail=trail,
            flash=request.query_params.get("done", "")[:200],
            webhooks=self.webhooks,
        )

    def allow_form(self, request: Request, session: Session | None, who: Principal) -> str:
        with self.open_store() as store:
            record_ = _signal(store, request.path_params["sid"])
        form = pages.allow_form(record_)
        closed = request.query_params.get("closed") == triage.FALSE_POSITIVE
        return render(
            "allow.html", session=session, me=who, form=form, record=record_, error="",
            closed=closed,
        )  # fmt: skip

    def exceptions(
        self, request: Request, session: Session | None, who: Principal
    ) -> str | dict[str, Any]:
        query = request.query_params.get("q", "")[:200]
        with self.open_store() as store:
            entries = list_exceptions(store, query)
        if _wants_json(request):
            return {"query": query, "exceptions": entries}
        return render(
            "exceptions.html", session=session, me=who, entries=entries, now=time.time(),
            query=query,
        )  # fmt: skip

    def hosts(
        self, request: Request, session: Session | None, who: Principal
    ) -> str | dict[str, Any]:
        return self._search(request, session, who, inventory.host_list, "hosts.html")

    def binaries(
        self, request: Request, session: Session | None, who: Principal
    ) -> str | dict[str, Any]:
        return self._search(request, session, who, inventory.binary_list, "binaries.html")

    def _search(
        self,
        request: Request,
        session: Session | None,
        who: Principal,
        search: Callable[[Store, int, str], inventory.HostList | inventory.BinaryList],
        template: str,
    ) -> str | dict[str, Any]:
        """An inventory list searched by `?q=` (any part of a name), or its JSON twin."""
        query = request.query_params.get("q", "")[:200]
        with self.open_store() as store:
            found = search(store, self._span(), query)
        if _wants_json(request):
            return found.as_json()
        return render(template, session=session, me=who, page=found)

    def webhook_page(
        self, request: Request, session: Session | None, who: Principal
    ) -> str | dict[str, Any]:
        with self.open_store() as store:
            hooks = inventory.webhook_list(store, self.config)
        if _wants_json(request):
            return {"webhooks": [hook.as_json() for hook in hooks]}
        return render("webhooks.html", session=session, me=who, hooks=hooks)

    def audit(self, _request: Request, session: Session | None, who: Principal) -> str:
        with self.open_store() as store:
            entries = list_audit(store, limit=500)
        return render("audit.html", session=session, me=who, entries=entries)

    def host(self, request: Request, session: Session | None, who: Principal) -> str:
        name = request.query_params.get("name", "").strip()
        if not 0 < len(name) <= 255:
            raise Refused(400, "name the host: /host?name=HOST (1 to 255 characters)")
        with self.open_store() as store:
            page = views.host_page(store, self._span(), name)
        return render("host.html", session=session, me=who, page=page, plot=pages.host_plot(page))

    def binary(self, request: Request, session: Session | None, who: Principal) -> str:
        key = request.query_params.get("key", "").strip()
        if not 0 < len(key) <= 4096:
            raise Refused(400, "name the binary: /binary?key=PATH-or-NAME")
        with self.open_store() as store:
            page = views.binary_page(store, self._span(), int(self.config.detect.history), key)
        return render(
            "binary.html", session=session, me=who, page=page, plot=pages.binary_plot(page)
        )

    def health(self, _request: Request, session: Session | None, who: Principal) -> str:
        settings = self.config.detect
        with self.open_store() as store:
            page = views.health_page(store, self._span(), settings.warmup_buckets)
        return render(
            "health.html",
            session=session,
            me=who,
            page=page,
            problems=self.failures(),
            plot=plots.hourly_svg(page.hourly),
            now=time.time(),
        )

    def _span(self) -> int:
        return max(1, int(self.config.detect.bucket_span))

    # -- actions -------------------------------------------------------------------------

    def acknowledge(self, request: Request, form: dict[str, str], who: Principal) -> str:
        verdict = form.get("verdict") or None
        with self.open_store() as store:
            record_ = _signal(store, request.path_params["sid"])
            try:
                views.acknowledge(store, record_.id, time.time(), who, verdict)
            except InputError as exc:
                raise Refused(400, str(exc)) from None
        return f"/signals/{record_.id}?done=acknowledged"

    def assign(self, request: Request, form: dict[str, str], who: Principal) -> str:
        with self.open_store() as store:
            record_ = _signal(store, request.path_params["sid"])
            name = form.get("assignee", "")
            name = who.name if name == "me" else name
            try:
                triage.assign(store, [record_.id], name, who, time.time())
            except InputError as exc:
                raise Refused(400, str(exc)) from None
        return f"/signals/{record_.id}?{urlencode({'done': f'assigned to {name}'})}"

    def close(self, request: Request, form: dict[str, str], who: Principal) -> str:
        """Close as a true or a false positive; a false positive goes on to the exception
        form, prefilled, for whoever may add one."""
        resolution = form.get("resolution", "")
        with self.open_store() as store:
            record_ = _signal(store, request.path_params["sid"])
            try:
                done = triage.close(
                    store, [record_.id], resolution, who, time.time(), form.get("comment") or None
                )
            except InputError as exc:
                raise Refused(400, str(exc)) from None
        if not done.changed:
            return f"/signals/{record_.id}?{urlencode({'done': done.unchanged[0][1]})}"
        if resolution == triage.FALSE_POSITIVE and who.can("add_exception"):
            return f"/signals/{record_.id}/allow?closed=false_positive"
        said = f"closed as {resolution.replace('_', ' ')}"
        return f"/signals/{record_.id}?{urlencode({'done': said})}"

    def comment(self, request: Request, form: dict[str, str], who: Principal) -> str:
        with self.open_store() as store:
            record_ = _signal(store, request.path_params["sid"])
            try:
                triage.comment(store, record_.id, form.get("text", ""), who, time.time())
            except InputError as exc:
                raise Refused(400, str(exc)) from None
        return f"/signals/{record_.id}?{urlencode({'done': 'comment added'})}#comments"

    def bulk(self, _request: Request, form: dict[str, str], who: Principal) -> str:
        """One action on every signal of the selected groups (rows of the list)."""
        groups = [g for g in form.get("group", "").split(",") if g][:MAX_BULK_GROUPS]
        if not groups:
            raise Refused(400, "select at least one row")
        action = form.get("action", "")
        try:  # only what the analyst saw: a signal that joined a group since is left open
            shown_at = float(form.get("shown_at", ""))
        except ValueError:
            raise Refused(400, "reload the list and select again (no shown_at)") from None
        with self.open_store() as store:
            sids = views.group_signal_ids(store, groups, shown_at)
            try:
                if action == "acknowledge":
                    done = triage.acknowledge(store, sids, who, time.time())
                elif action in ("close_true_positive", "close_false_positive"):
                    resolution = action.removeprefix("close_")
                    done = triage.close(store, sids, resolution, who, time.time())
                else:
                    raise Refused(400, f"unknown bulk action {action[:40]!r}")
            except InputError as exc:
                raise Refused(400, str(exc)) from None
        said = f"{action.replace('_', ' ')}: {len(done.changed)} signal(s) changed"
        if done.unchanged:
            said += f", {len(done.unchanged)} left as they were (closed already or no change)"
        back = form.get("back", "/signals")
        return f"{_local(back)}{'&' if '?' in _local(back) else '?'}{urlencode({'done': said})}"

    def redeliver(self, request: Request, form: dict[str, str], who: Principal) -> str:
        names = self.webhooks
        only = form.get("webhook") or None
        with self.open_store() as store:
            record_ = _signal(store, request.path_params["sid"])
            try:
                queued = redeliver(store, record_.id, names, now=time.time(), only=only)
            except InputError as exc:
                raise Refused(400, str(exc)) from None
            with store.transaction() as conn:
                record(conn, who, "signal.redeliver", f"signal:{record_.id}",
                       {"summary": "queued again for " + ", ".join(queued)})  # fmt: skip
        return (
            f"/signals/{record_.id}?{urlencode({'done': 'queued again for ' + ', '.join(queued)})}"
        )

    def add_exception(self, _request: Request, form: dict[str, str], who: Principal) -> str:
        settings = self.config.detect
        with self.open_store() as store:
            record_ = _signal(store, form.get("signal", ""))
            try:
                entry = exception_from_form(form, time.time())
                added = add_exception(
                    store,
                    entry,
                    by=who,
                    confirm_broad=form.get("broad") == "yes",
                    max_age=settings.exception_max_age,
                    history=settings.history,
                    about=f"signal:{record_.id}",
                )
            except InputError as exc:
                typed, wrong = pages.allow_form_again(record_, form), str(exc)
                raise Redisplay(
                    400,
                    lambda session: render(
                        "allow.html",
                        session=session,
                        me=who,
                        form=typed,
                        record=record_,
                        error=wrong,
                    ),
                ) from None
        done = (
            f"exception #{added.id} created: {added.entry.describe()}; {added.preview.describe()}"
        )
        return f"/signals/{record_.id}?{urlencode({'done': done[:190]})}"

    def remove_exception(self, request: Request, _form: dict[str, str], who: Principal) -> str:
        number = int(request.path_params["eid"])
        with self.open_store() as store:
            if not remove_exception(store, number, who):
                raise Refused(404, f"no exception #{number}")
        return "/exceptions"


def _not_allowed(who: Principal, action: str) -> str:
    if not who.named:
        return "sign in as a named user to do this (rarenet users add NAME --role analyst)"
    return f"{who.name} is a {who.role}: {action.replace('_', ' ')} needs a higher role"


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
            expires_at = parse_expiry(expires, now)
        except ValueError as exc:
            raise InputError(str(exc), where="expires") from None
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
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_BULK_GROUPS + 20)
    except ValueError:
        raise Refused(413, f"a form of more than {MAX_BULK_GROUPS + 20} fields") from None
    form = dict(pairs)
    # the list's checkboxes: every selected row (group ids are hex: joined by commas)
    form["group"] = ",".join(v for k, v in pairs if k == "group" and "," not in v)
    return form


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser form post, or an old browser: the CSRF token decides
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def _wants_json(request: Request) -> bool:
    """A page's JSON twin: `?format=json`."""
    return request.query_params.get("format") == "json"


def _local(target: str) -> str:
    """A redirect target on this server only (`/…`, never `//host` or a scheme)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:2000]


def _secure(response: Response) -> Response:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response
