"""What every backend needs to know about TLS, written once."""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

import smtp_core as smtp

__all__ = ["PLAINTEXT_AFTER_STARTTLS", "server_config", "tls_info"]

PLAINTEXT_AFTER_STARTTLS = (
    "plaintext arrived after STARTTLS and before the TLS handshake (command injection)"
)


def tls_info(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any]:
    """The details a Session keeps about an established TLS connection."""
    if ssl_object is None:
        return {}
    cipher = ssl_object.cipher()
    return {
        "version": ssl_object.version(),
        "cipher": cipher[0] if cipher else None,
        "peer_certificate": ssl_object.getpeercert(),
    }


def server_config(
    config: smtp.ServerConfig | None, ssl_context: ssl.SSLContext | None, implicit_tls: bool
) -> smtp.ServerConfig:
    """The config a server runs with: STARTTLS offered exactly when it can
    be carried out (a context, and not already implicit TLS). ValueError
    for require_tls without a context: no mail could ever be accepted."""
    base = config or smtp.ServerConfig()
    if base.require_tls and ssl_context is None:
        raise ValueError("require_tls needs an ssl_context: without TLS every MAIL gets 530")
    offer = ssl_context is not None and not implicit_tls
    if base.starttls != offer:
        base = dataclasses.replace(base, starttls=offer)
    return base
