"""Quotes: the terms of a payment (amounts, fee, who, until when), signed by the switch's
Ed25519 key and handed to the payer as an opaque `quote_id`. The terms travel in the quote
itself, so nothing is stored: a payment made from it checks the signature and the expiry
on the switch's clock, and its terms cannot be altered. A quote is an offer: until it
expires it may back a payment (each with its own id); docs/SWITCH.md says why.
"""

from __future__ import annotations

import base64
import binascii
import os

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

QUOTE_ID_LENGTH_MAX = 1024


class Quote(msgspec.Struct, array_like=True, frozen=True):
    nonce: str
    payer_account_id: str
    payee_account_id: str
    payer_participant: str
    payee_participant: str
    ledger: str
    amount: int  # what the payee receives
    fee: int  # what the payer pays on top
    expires_at: int  # ns since the epoch, on the switch's clock

    @property
    def send_amount(self) -> int:
        return self.amount + self.fee


def new_nonce() -> str:
    return os.urandom(12).hex()


def seal(quote: Quote, key: Ed25519PrivateKey) -> str:
    terms = msgspec.json.encode(quote)
    return f"{_b64(terms)}.{_b64(key.sign(terms))}"


def unseal(quote_id: str, key: Ed25519PrivateKey) -> Quote | None:
    """The quote's terms, or None when it is not one this switch signed, unaltered."""
    terms_text, _, signature_text = quote_id.partition(".")
    try:
        terms, signature = _unb64(terms_text), _unb64(signature_text)
        key.public_key().verify(signature, terms)
        return msgspec.json.decode(terms, type=Quote)
    except (InvalidSignature, binascii.Error, ValueError, msgspec.ValidationError):
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
