"""ckite's admin console: ``/status``, ``/cluster/status``, ``/metrics``, membership routes and a
live HTML page, served by waitress for any application that embeds ckite.

An application adds its own routes to the same server through :attr:`AdminServer.app`
(a Flask app) and may answer errors with :func:`json_error`; ckite's exceptions raised in a
route become JSON errors with the right status by themselves. A GET route that changes state
is marked with :func:`mutating`, so that it needs the admin token like a POST.
"""
from ckite.admin.auth import mutating
from ckite.admin.cluster import ADMIN_PORT_OFFSET, admin_url_by_convention
from ckite.admin.errors import json_error
from ckite.admin.jsonvalues import json_value
from ckite.admin.server import AdminServer, build_admin

__all__ = ["ADMIN_PORT_OFFSET", "AdminServer", "admin_url_by_convention", "build_admin", "json_error", "json_value",
           "mutating"]
