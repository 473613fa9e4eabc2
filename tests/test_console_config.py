"""What the console page learns from its own member before it polls (``/console/config``)."""
from __future__ import annotations

import pytest

from ckite import CKiteBuilder
from ckite.admin import build_admin
from ckite.rpc.local import LocalNetwork

from tests.kv_example import KVStore

BINDING = "localhost:9291"


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

