"""The Thrift IDL (``ckite.thrift``, shipped inside the package), loaded once.

``ckite_thrift`` is the module thriftpy2 builds from it: the ``*ST`` structs, ``CKiteErrorST``
and ``CKiteService``. The file is found through :mod:`importlib.resources`, so it loads
from an installed wheel as well as from the source checkout.
"""
from __future__ import annotations

from importlib import resources

import thriftpy2

with resources.as_file(resources.files("ckite.rpc") / "ckite.thrift") as _path:
    ckite_thrift = thriftpy2.load(str(_path), module_name="ckite_thrift")

#: The service the transport serves and calls.
CKiteService = ckite_thrift.CKiteService
