"""Mutual TLS between members: the cluster's CA is the membership boundary.

Every member holds a certificate signed by the cluster's CA and its private key, and trusts
that CA only. Both sides of a member-to-member connection present their certificate and
require the other's (``CERT_REQUIRED`` both ways, TLS 1.2 or newer): a stranger without such a
certificate cannot complete the handshake, so it can neither vote, nor append, nor forward.
The client side also checks that the server's certificate names the host it dialled (the host
of the member's binding), so a certificate must carry its member's host name or address as a
subject alternative name (``scripts/make-certs`` adds ``localhost`` and ``127.0.0.1`` too).

What TLS does not do is told in ``docs/security.md``: every holder of a CA-signed certificate
is a fully trusted member.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

#: The oldest protocol either side accepts.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True)
class TlsConfig:
    """Paths (PEM) of this member's certificate, its private key, and the cluster CA's certificate.

    ``check_hostname`` (on by default) makes a client refuse a server whose certificate does not
    name the host of the address it called.
    """

    cert: Path
    key: Path
    ca: Path
    check_hostname: bool = True

    @classmethod
    def of(cls, cert: str | PathLike[str], key: str | PathLike[str], ca: str | PathLike[str],
           check_hostname: bool = True) -> TlsConfig:
        """Check that the three files can be read and build the contexts once, so a wrong path, a key
        that does not match the certificate or a file that is not PEM fails here with ValueError naming it."""
        config = cls(Path(cert), Path(key), Path(ca), check_hostname)
        for label, path in (("certificate", config.cert), ("private key", config.key), ("CA certificate", config.ca)):
            if not path.is_file():
                raise ValueError(f"TLS {label} {str(path)!r} is not a readable file")
        config.server_context()
        config.client_context()
        return config

    def server_context(self) -> ssl.SSLContext:
        """The context the Thrift server wraps accepted connections with: it requires a client certificate."""
        return self._context(ssl.PROTOCOL_TLS_SERVER)

    def client_context(self) -> ssl.SSLContext:
        """The context outgoing connections use: it presents this member's certificate and checks the server's."""
        context = self._context(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = self.check_hostname
        return context

    def _context(self, protocol: int) -> ssl.SSLContext:
        context = ssl.SSLContext(protocol)
        context.minimum_version = MINIMUM_VERSION
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"cannot load the TLS certificate {str(self.cert)!r} with its key "
                             f"{str(self.key)!r}: {exc}") from None
        try:
            context.load_verify_locations(cafile=self.ca)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"cannot load the TLS CA certificate {str(self.ca)!r}: {exc}") from None
        return context
