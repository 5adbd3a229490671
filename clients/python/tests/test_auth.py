"""Auth: the first token turns auth on; tokens scope tenants; revoked tokens stop working."""

from __future__ import annotations

import pytest
from conftest import SessiondProcess

from sessiond_client import Client, Forbidden, NotFound, Unauthenticated


@pytest.fixture(scope="module")
def auth_server():
    """A sessiond whose first admin token is created by the fixture (which turns auth on)."""
    proc = SessiondProcess()
    with Client(proc.addr, timeout=5) as bootstrap:
        assert bootstrap.server_info["authRequired"] is False and bootstrap.server_info["admin"] is True
        got = bootstrap.acquire("auth:local-before")
        bootstrap.release(got["session"]["id"], got["lease"])
        proc.local_session_id = got["session"]["id"]
        admin = bootstrap.tokens_create("local", admin=True, label="admin")
    proc.admin = admin
    yield proc
    proc.cleanup()


def test_admin_token_info(auth_server):
    admin = auth_server.admin
    assert isinstance(admin["token"], str) and admin["token"]
    info = admin["info"]
    assert info["tenant"] == "local" and info["admin"] is True and info.get("label") == "admin"
    assert "revokedAt" not in info and isinstance(info["createdAt"], str) and isinstance(info["id"], str)


def test_auth_is_on_for_new_connections(auth_server):
    # Without a token the automatic hello fails (sessiond refuses a token-less hello when auth is
    # on) -- or, if a server accepts it, every tenant method fails.
    try:
        anonymous = Client(auth_server.addr, timeout=5)
    except Unauthenticated as err:
        assert err.code == -32004 and err.reason == "unauthenticated"
    else:
        with anonymous:
            assert anonymous.server_info["authRequired"] is True
            with pytest.raises(Unauthenticated):
                anonymous.get(key="auth:local-before")
    with Client(auth_server.addr, timeout=5, hello=False) as silent:
        assert silent.health()["status"] == "ok"  # health needs no auth
        with pytest.raises(Unauthenticated) as err:
            silent.get(key="auth:local-before")
        assert err.value.code == -32004
        with pytest.raises(Unauthenticated):
            silent.tokens_list()


def test_bad_token_fails_on_connect(auth_server):
    with pytest.raises(Unauthenticated):
        Client(auth_server.addr, token="not-a-real-token", timeout=5)


def test_tokens_tenants_and_revoke(auth_server):
    addr, admin = auth_server.addr, auth_server.admin
    with Client(addr, token=admin["token"], timeout=5) as root:
        assert root.server_info["admin"] is True and root.server_info["tenant"] == "local"
        assert root.get(key="auth:local-before")["session"]["id"] == auth_server.local_session_id
        acme = root.tokens_create("acme", label="acme user")
        assert acme["info"]["admin"] is False and acme["info"]["tenant"] == "acme"
        listed = {t["id"]: t for t in root.tokens_list()["tokens"]}
        assert admin["info"]["id"] in listed and acme["info"]["id"] in listed
        assert all("token" not in t for t in listed.values())

        with Client(addr, token=acme["token"], timeout=5) as user:
            assert user.server_info["tenant"] == "acme" and user.server_info["admin"] is False
            got = user.acquire("auth:acme")
            user.release(got["session"]["id"], got["lease"])
            with pytest.raises(NotFound):  # another tenant's session answers like a missing one
                user.get(auth_server.local_session_id)
            with pytest.raises(NotFound):
                root.get(got["session"]["id"])
            with pytest.raises(Forbidden) as err:
                user.tokens_list()
            assert err.value.code == -32005
            with pytest.raises(Forbidden):
                user.tokens_create("acme")

            assert root.tokens_revoke(acme["info"]["id"]) == {"revoked": True}
            with pytest.raises(Unauthenticated):  # also on the connection that is already open
                user.get(got["session"]["id"])
        revoked = {t["id"]: t for t in root.tokens_list()["tokens"]}[acme["info"]["id"]]
        assert isinstance(revoked.get("revokedAt"), str)
        with pytest.raises(Unauthenticated):
            Client(addr, token=acme["token"], timeout=5)
        with pytest.raises(NotFound):
            root.tokens_revoke("no-such-token-id")


def test_token_from_env(auth_server, monkeypatch):
    monkeypatch.setenv("SESSIOND_TOKEN", auth_server.admin["token"])
    with Client(auth_server.addr, timeout=5) as c:
        assert c.token == auth_server.admin["token"]
        assert c.server_info["admin"] is True
        assert c.stats()["sessions"] >= 1
    with Client(auth_server.addr, token="", timeout=5, hello=False) as c:  # "" means: no token
        assert c.token is None
        with pytest.raises(Unauthenticated):
            c.stats()
