"""Certificates for the TLS tests, made by scripts/make-certs (the script the README tells users to run)."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

MAKE_CERTS = Path(__file__).resolve().parents[1] / "scripts" / "make-certs"


@dataclass(frozen=True)
class Certs:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}-key.pem"

    def files(self, name: str) -> tuple[Path, Path, Path]:
        """(certificate, key, CA) of member ``name``, in the order with_tls and TlsConfig.of take them."""
        return self.cert(name), self.key(name), self.ca


def make_certs(directory: Path, *names: str) -> Certs:
    """A throwaway CA in ``directory`` and a certificate for each name."""
    subprocess.run(["bash", str(MAKE_CERTS), str(directory), *names], check=True, capture_output=True, timeout=30)
    return Certs(directory)
