"""Why an operation on a chip or a message was refused, and WAHA's errors as a tenant may read them.

Every error here is a ChipError: .message says why in the user's language, .code names the case
for the API. The modules of chips raise them; the portal and the API show them.
"""
from __future__ import annotations

import re

import requests
import urllib3
from django.utils.translation import gettext as _

from proxies import services as proxy_services
from waha.client import ContainerUnreachable

from .models import Chip


class ChipError(Exception):
    """An operation on a chip or a message was refused; .message says why, in the user's language."""

    code = "chip_error"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ChipLimitReached(ChipError):
    code = "chip_limit"


class ContainerUnavailable(ChipError):
    code = "container_unavailable"


class ChipNotReady(ChipError):
    code = "chip_not_ready"


class SendRefused(ChipError):
    code = "send_refused"


class BatchRefused(SendRefused):
    """Some messages of a batch are invalid: .errors maps their position to the reason; nothing was queued."""

    def __init__(self, message: str, errors: dict[int, str]):
        super().__init__(message, "invalid")
        self.errors = errors


def never_reached(exc: ContainerUnreachable) -> bool:
    """Whether the request provably never reached WAHA (refused or unconnectable), so resending is safe."""
    cause = exc.__cause__
    if isinstance(cause, requests.ConnectTimeout):
        return True
    if isinstance(cause, requests.ConnectionError) and not isinstance(cause, requests.Timeout):
        inner = cause.args[0] if cause.args else None
        reason = getattr(inner, "reason", inner)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


_SERVER_URL = re.compile(r"https?://[^\s/]+")


def redacted(chip: Chip, exc: BaseException) -> str:
    """A WAHA/runtime error as a tenant may read it: no proxy credentials, no server address, bounded."""
    if isinstance(exc, ContainerUnreachable):
        return _("no connection to the server") if never_reached(exc) else _("the server did not answer in time")
    text = _SERVER_URL.sub("WAHA", str(exc))
    return proxy_services.redact(text, chip.proxy_assignment)[:500]


def container_error(chip: Chip, exc: BaseException) -> ContainerUnavailable:
    """The chip's WAHA server failed: what the tenant is told (and may retry)."""
    return ContainerUnavailable(
        _("The WhatsApp server of this chip is unavailable right now (%(error)s). Try again in a minute.")
        % {"error": redacted(chip, exc)}
    )
