"""What the console page learns from its own member before it polls (``/console/config``), and the
files it is made of: all served by the package itself, none from another origin (members often
have no internet access)."""
from __future__ import annotations

import re

import pytest

from ckite import CKiteBuilder
from ckite.admin import build_admin
from ckite.rpc.local import LocalNetwork
from tests.kv_example import KVStore

BINDING = "localhost:9291"
#: A URL with a host (``https://cdn...``, ``//cdn...``); the SVG namespace is a name, not a place to fetch.
OTHER_ORIGIN = re.compile(r"(?:https?:)?//[\w-]+(?:\.[\w-]+)+")
SVG_NAMESPACE = "http://www.w3.org"


@pytest.fixture(scope="module")
def member():
    """A member that is never started: the console's config and files need none of its threads."""
    return (CKiteBuilder().with_local_binding(BINDING).with_in_memory_storage()
            .with_transport(LocalNetwork().transport(BINDING)).with_state_machine(KVStore()).without_admin().build())


def console_config(member, token):
    admin = build_admin(member, "127.0.0.1", 0, token=token)
    try:
        return admin.app.test_client().get("/console/config").get_json()
    finally:
        admin.stop()


@pytest.mark.parametrize("token, required", [(None, False), ("s3cret-token", True)])
def test_the_config_tells_the_page_whether_to_ask_for_the_admin_token(member, token, required):
    config = console_config(member, token)
    assert config["tokenRequired"] is required
    assert "s3cret" not in str(config)   # whether a token is needed, never the token itself


def test_every_file_of_the_page_is_served_by_the_member_itself(member):
    admin = build_admin(member, "127.0.0.1", 0)
    client = admin.app.test_client()
    try:
        html = client.get("/").data.decode()
        pending = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        assert "/static/console.js" in pending and "/static/console.css" in pending
        seen = set()
        while pending:   # the page's files, then the modules they import
            path = pending.pop()
            if path in seen:
                continue
            seen.add(path)
            with client.get(path) as answer:
                assert answer.status_code == 200, path
                text = answer.data.decode()
            assert set(OTHER_ORIGIN.findall(text)) <= {SVG_NAMESPACE}, f"{path} names another origin"
            pending += ["/static/" + name for name in re.findall(r'from "\./([\w.-]+\.js)"', text)]
        assert {"/static/charts.js", "/static/actions.js"} <= seen
    finally:
        admin.stop()
