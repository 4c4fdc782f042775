"""The switch's Ed25519 key, kept in the data directory (`switch.ed25519`, mode 0600): it
signs quotes (switch/hub/quotes.py), so that their terms cannot be altered, and anyone with
the public key (GET /v1/hub/public-key) can check what the switch signed."""

from __future__ import annotations

import contextlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switch.api.registry_api import write_secret

SIGNING_KEY_FILE = "switch.ed25519"


def signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The data directory's key; made on first use. Several processes starting at once
    agree: the first file written wins, and every process reads that one."""
    path = data_dir / SIGNING_KEY_FILE
    if not path.exists():
        made = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
        with contextlib.suppress(FileExistsError):  # another process made it first: use it
            write_secret(path, made.strip(), replace=False)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key: move it away, and a "
                         "new one is made on the next start")
    return loaded


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw).hex()
