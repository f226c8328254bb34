"""Credentials that do only what they are for, on real `rarenet serve` processes: every
route against every machine secret (a table checked against the app's own routes, so a
new route cannot be forgotten), roles, sign-in limits, the audit trail, the trusted
proxy and the Host-header check. The pure parts (roles, limiter, host names, users)
are tested without a server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
from starlette.routing import Route
from support.serve_process import (
    METRICS_TOKEN,
    PASSWORD,
    SHARD_TOKEN,
    SNAPSHOT_TOKEN,
    TOKEN,
    ServerProcess,
)

from rarenet.baseline.access.hosts import allowed_names, host_name, name_allowed
from rarenet.baseline.access.limiter import SigninLimiter
from rarenet.baseline.access.roles import Principal, role_allows
from rarenet.baseline.access.users import (
    add_user,
    create_token,
    remove_user,
    revoke_token,
    user_for_token,
    verify_password,
)
from rarenet.baseline.config import load_config
from rarenet.baseline.errors import InputError
from rarenet.baseline.serve.app import Api
from rarenet.baseline.store import Store

SECRETS = {
    "ingest": TOKEN,
    "snapshot": SNAPSHOT_TOKEN,
    "metrics": METRICS_TOKEN,
    "shard": SHARD_TOKEN,
}
SID = "0" * 32  # a signal id that does not exist: refusals come before any lookup

# (method, route path) -> (a concrete path, who may open it). "person": a signed-in user
# or their personal API token; "public": anyone; "signin": a user's password; otherwise
# the one machine secret.
ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/v1/ingest"): ("/v1/ingest", "ingest"),
    ("GET", "/v1/snapshot"): ("/v1/snapshot?host=h", "snapshot"),
    ("POST", "/v1/shard"): ("/v1/shard", "shard"),
    ("GET", "/metrics"): ("/metrics", "metrics"),
    ("GET", "/v1/signals"): ("/v1/signals", "person"),
    ("GET", "/healthz"): ("/healthz", "public"),
    ("GET", "/openapi.json"): ("/openapi.json", "public"),
    ("GET", "/"): ("/", "person"),
    ("GET", "/signals"): ("/signals", "person"),
    ("GET", "/signals/{sid}"): (f"/signals/{SID}", "person"),
    ("GET", "/signals/{sid}/allow"): (f"/signals/{SID}/allow", "person"),
    ("POST", "/signals/{sid}/acknowledge"): (f"/signals/{SID}/acknowledge", "person"),
    ("POST", "/signals/{sid}/redeliver"): (f"/signals/{SID}/redeliver", "person"),
    ("POST", "/signals/{sid}/assign"): (f"/signals/{SID}/assign", "person"),
    ("POST", "/signals/{sid}/close"): (f"/signals/{SID}/close", "person"),
    ("POST", "/signals/{sid}/comment"): (f"/signals/{SID}/comment", "person"),
    ("POST", "/signals/bulk"): ("/signals/bulk", "person"),
    ("GET", "/exceptions"): ("/exceptions", "person"),
    ("GET", "/hosts"): ("/hosts", "person"),
    ("GET", "/binaries"): ("/binaries?q=bash", "person"),
    ("GET", "/webhooks"): ("/webhooks", "person"),
    ("POST", "/exceptions"): ("/exceptions", "person"),
    ("POST", "/exceptions/{eid:int}/remove"): ("/exceptions/999/remove", "person"),
    ("GET", "/audit"): ("/audit", "person"),
    ("GET", "/host"): ("/host?name=h", "person"),
    ("GET", "/binary"): ("/binary?key=bash", "person"),
    ("GET", "/health"): ("/health", "person"),
    ("GET", "/login"): ("/login", "public"),
    ("POST", "/login"): ("/login", "signin"),  # a password, never a secret: always 401 here
    ("POST", "/logout"): ("/logout", "person"),
    ("GET", "/static/console.css"): ("/static/console.css", "public"),
}
REFUSED = (401, 403)


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """Every (method, path) the real app serves."""
    config = load_config(None, env={"RARENET_DB": str(tmp_path / "routes.db")})
    found = set()
    for route in Api(config).app().routes:
        assert isinstance(route, Route)
        found.update((method, route.path) for method in route.methods or () if method != "HEAD")
    return found


def test_the_route_table_covers_every_route(tmp_path: Path) -> None:
    assert app_routes(tmp_path) == set(ROUTES), "a route without an entry in ROUTES"


@pytest.fixture(scope="module")
def shard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server holding every kind of secret (a shard, so /v1/shard is live too)."""
    workdir = tmp_path_factory.mktemp("access")
    with ServerProcess(workdir, extra_toml='[detect]\nrole = "shard"\n', scoped=True) as server:
        for name, role in (("vic", "viewer"), ("ann", "analyst"), ("ada", "admin")):
            server.add_user(name, role)
        yield server


def call(
    server: ServerProcess, method: str, path: str, secret: str | None, *, in_query: bool = False
) -> requests.Response:
    headers = {"Origin": server.url}
    if secret is not None and not in_query:
        headers["Authorization"] = f"Bearer {secret}"
    if secret is not None and in_query:
        path += ("&" if "?" in path else "?") + f"token={secret}"
    body = b'{"op": "data_end", "args": {"span": 900}}' if path == "/v1/shard" else b"{}"
    return requests.request(
        method, server.url + path, headers=headers, data=body if method == "POST" else None,
        timeout=30, allow_redirects=False,
    )  # fmt: skip


@pytest.mark.slow
def test_every_machine_secret_opens_only_its_own_route(shard_server: ServerProcess) -> None:
    wrong: list[str] = []
    for (method, _route), (path, opener) in ROUTES.items():
        for name, secret in SECRETS.items():
            for in_query in (False, True):
                status = call(shard_server, method, path, secret, in_query=in_query).status_code
                refused = status in REFUSED
                expected_refused = opener not in (name, "public")
                if refused != expected_refused:
                    wrong.append(f"{method} {path} with the {name} secret: {status}")
    assert wrong == []
    # Without any credential, only the public routes answer (person pages send to /login).
    for (method, _route), (path, opener) in ROUTES.items():
        status = call(shard_server, method, path, None).status_code
        if opener == "public":
            assert status not in REFUSED, (method, path, status)
        elif method == "GET" and opener == "person" and not path.startswith("/v1/"):
            assert status == 303, (method, path, status)
        else:
            assert status in REFUSED, (method, path, status)


@pytest.mark.slow
def test_personal_tokens_act_with_their_role(shard_server: ServerProcess) -> None:
    tokens = {name: shard_server.api_token(name) for name in ("vic", "ann", "ada")}
    for (method, _route), (path, opener) in ROUTES.items():
        if opener in SECRETS:  # a person's token opens no machine route
            assert call(shard_server, method, path, tokens["ada"]).status_code in REFUSED, path
    assert call(shard_server, "GET", "/v1/signals", tokens["vic"]).status_code == 200
    assert call(shard_server, "GET", "/audit", tokens["vic"]).status_code == 403
    assert call(shard_server, "GET", "/audit", tokens["ada"]).status_code == 200
    ack = f"/signals/{SID}/acknowledge"
    assert call(shard_server, "POST", ack, tokens["vic"]).status_code == 403  # viewer
    assert call(shard_server, "POST", ack, tokens["ann"]).status_code == 404  # allowed; no signal
    assert call(shard_server, "POST", "/exceptions", tokens["ann"]).status_code == 403
    assert call(shard_server, "POST", "/exceptions", tokens["ada"]).status_code in (400, 404)


@pytest.mark.slow
def test_twenty_failed_sign_ins_lock_the_account_and_address(tmp_path: Path) -> None:
    with ServerProcess(tmp_path) as server:
        server.add_user("ada", "admin")
        server.add_user("bob", "viewer")

        def sign_in(user: str, password: str) -> int:
            form = {"user": user, "password": password, "next": "/"}
            return requests.post(
                f"{server.url}/login", data=form, timeout=30, allow_redirects=False
            ).status_code

        assert sign_in("ada", PASSWORD) == 303
        assert [sign_in("ada", f"guess-{n:04d}-wrong") for n in range(20)] == [401] * 20
        assert sign_in("ada", PASSWORD) == 429  # locked, even with the right password
        assert sign_in("bob", PASSWORD) == 429  # this address is locked too
        audit = subprocess.run(
            [sys.executable, "-m", "rarenet", "audit", "list", "--json", "--config",
             str(server.config)],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        entries = orjson.loads(audit.stdout)
        actions = [e["action"] for e in entries]
        assert actions.count("signin.failed") == 20 and actions.count("signin.locked") == 1
        assert actions.count("signin") == 1
        failed = next(e for e in entries if e["action"] == "signin.failed")
        assert failed["target"] == "user:ada" and failed["address"] == "127.0.0.1"
        assert PASSWORD not in audit.stdout.decode() and "guess-" not in audit.stdout.decode()


@pytest.mark.slow
@pytest.mark.parametrize("tokens", [(), (TOKEN,)], ids=["no-tokens", "tokens"])
def test_a_foreign_host_header_is_refused(tmp_path: Path, tokens: tuple[str, ...]) -> None:
    names = '[server]\nnames = ["rarenet.example.org"]\n'
    with ServerProcess(tmp_path, tokens=tokens, extra_toml=names) as server:
        for path in ("/healthz", "/", "/signals", "/v1/signals", "/login"):
            foreign = requests.get(
                server.url + path, headers={"Host": "attacker.example"}, timeout=30
            )
            assert foreign.status_code == 421, path
            assert "attacker.example" in foreign.json()["error"]
        posted = requests.post(
            f"{server.url}/exceptions", headers={"Host": "attacker.example:8089"},
            data={"path": "*", "reason": "x"}, timeout=30,
        )  # fmt: skip
        assert posted.status_code == 421
        for good in ("localhost", "127.0.0.1", "rarenet.example.org:443"):
            answer = requests.get(f"{server.url}/healthz", headers={"Host": good}, timeout=30)
            assert answer.status_code == 200, good


@pytest.mark.slow
def test_a_trusted_proxy_signs_its_user_in(tmp_path: Path) -> None:
    proxy = '[server]\ntrusted_proxies = ["127.0.0.1"]\nuser_header = "X-Forwarded-User"\n'
    with ServerProcess(tmp_path, extra_toml=proxy) as server:
        server.add_user("ann", "analyst")
        page = requests.get(
            f"{server.url}/signals", headers={"X-Forwarded-User": "ann"}, timeout=30
        )
        assert page.status_code == 200 and "ann · analyst" in page.text
        other = requests.get(  # no account: [server] proxy_role (viewer by default)
            f"{server.url}/signals", headers={"X-Forwarded-User": "zoe"}, timeout=30
        )
        assert other.status_code == 200 and "zoe · viewer" in other.text
        bare = requests.get(f"{server.url}/signals", timeout=30, allow_redirects=False)
        assert bare.status_code == 303  # no header: sign in
    (tmp_path / "untrusted").mkdir()
    with ServerProcess(tmp_path / "untrusted") as server:  # the header alone is nothing
        server.add_user("ann", "analyst")
        page = requests.get(
            f"{server.url}/signals", headers={"X-Forwarded-User": "ann"}, timeout=30,
            allow_redirects=False,
        )  # fmt: skip
        assert page.status_code == 303


# -- the parts --------------------------------------------------------------------------


def test_roles_are_ordered() -> None:
    assert role_allows("viewer", "read") and not role_allows("viewer", "acknowledge")
    assert role_allows("analyst", "acknowledge") and not role_allows("analyst", "add_exception")
    assert role_allows("admin", "add_exception") and role_allows("admin", "read_audit")
    assert not role_allows("admin", "no-such-action") and not role_allows("root", "read")
    anonymous = Principal("anonymous", "admin", "open", "127.0.0.1")
    assert anonymous.can("read") and not anonymous.can("acknowledge")  # never unnamed changes


def test_the_limiter_locks_after_twenty_and_unlocks_later() -> None:
    limiter = SigninLimiter(max_failures=20, window=900, lockout=600)
    locks = [limiter.failed("ada", "10.0.0.1", now=1000 + n) for n in range(20)]
    assert locks == [False] * 19 + [True]
    assert limiter.locked_for("ada", "10.0.0.9", now=1100) == pytest.approx(519)  # the account
    assert limiter.locked_for("bob", "10.0.0.1", now=1100) == pytest.approx(519)  # the address
    assert limiter.locked_for("bob", "10.0.0.2", now=1100) == 0
    assert limiter.locked_for("ada", "10.0.0.1", now=1620) == 0  # expired
    spread = SigninLimiter(max_failures=3, window=10, lockout=60)
    assert not any(spread.failed("c", "a", now=t) for t in (0, 11, 22, 33))  # outside the window


def test_host_names() -> None:
    allowed = allowed_names("0.0.0.0", ["*.example.org", "Rarenet.Local"])
    assert "0.0.0.0" not in allowed and "rarenet.local" in allowed
    assert host_name("[::1]:8089") == "::1" and host_name("Example.org:443") == "example.org"
    assert name_allowed("a.example.org", allowed) and name_allowed("localhost:1", allowed)
    assert name_allowed("RARENET.LOCAL.", allowed)
    for bad in (None, "", "example.org", "evil.com#.example.org", "127.0.0.2"):
        assert not name_allowed(bad, allowed), bad
    assert "10.1.2.3" in allowed_names("10.1.2.3", [])


def test_users_and_personal_tokens(tmp_path: Path) -> None:
    cli = Principal("cli:test", "admin", "cli", "local")
    with Store(tmp_path / "users.db") as store:
        add_user(store, "ada", "admin", PASSWORD, cli)
        with pytest.raises(InputError, match="already exists"):
            add_user(store, "ada", "viewer", PASSWORD, cli)
        with pytest.raises(InputError, match="12 to"):
            add_user(store, "bob", "viewer", "short", cli)
        with pytest.raises(InputError, match="not a user name"):
            add_user(store, "<script>", "viewer", PASSWORD, cli)
        assert verify_password(store, "ada", PASSWORD) is not None
        assert verify_password(store, "ada", PASSWORD + "x") is None
        assert verify_password(store, "nobody", PASSWORD) is None
        token, secret = create_token(store, "ada", "ci", None, cli)
        assert secret.startswith("rnu_") and user_for_token(store, secret) is not None
        stored = store.conn.execute("SELECT digest FROM api_tokens").fetchone()[0]
        assert secret not in stored  # only its hash is kept
        assert user_for_token(store, secret + "x") is None
        assert revoke_token(store, token.id, cli) and user_for_token(store, secret) is None
        _, expired = create_token(store, "ada", "old", 1.0, cli)
        assert user_for_token(store, expired) is None
        _, live = create_token(store, "ada", "live", None, cli)
        assert remove_user(store, "ada", cli) and user_for_token(store, live) is None
        actions = [r[0] for r in store.conn.execute("SELECT action FROM audit ORDER BY id")]
        assert actions == [
            "user.add", "token.add", "token.revoke", "token.add", "token.add", "user.remove",
        ]  # fmt: skip
