"""Meta's error envelope (Graph API errors, https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).

A refused call is answered ``{"error": {"message": "(#<code>) <title>", "type", "code", "error_subcode"?,
"error_data": {"messaging_product", "details"}?, "fbtrace_id"}}``, mostly with HTTP 400 whatever the cause.
"""

from __future__ import annotations

import secrets
from typing import Any

#: Titles Meta uses for the codes the service meets; the message reads "(#<code>) <title>".
TITLES = {
    1: "An unknown error occurred",
    2: "Service temporarily unavailable",
    4: "Application request limit reached",
    100: "Invalid parameter",
    190: "Invalid OAuth access token - Cannot parse access token",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    131000: "Something went wrong",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131026: "Message undeliverable",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    133010: "Account not registered",
}


class GraphFailure(Exception):
    """A call Meta refuses: the HTTP status and what goes into the error envelope.

    ``message`` defaults to "(#<code>) <title>"; ``details`` goes to ``error_data.details``.
    """

    def __init__(
        self,
        status: int,
        code: int,
        message: str | None = None,
        *,
        details: str | None = None,
        type_: str = "OAuthException",
        subcode: int | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message or f"(#{code}) {TITLES.get(code, 'Error')}"
        self.details = details
        self.type = type_
        self.subcode = subcode
        super().__init__(details or self.message)

    def envelope(self) -> dict[str, Any]:
        """The JSON body Meta answers with, with a fresh ``fbtrace_id``."""
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)[:22]
        return {"error": error}


def bad_parameter(details: str) -> GraphFailure:
    """Error 100: the message itself names the parameter ("(#100) Param ... must be ...")."""
    return GraphFailure(400, 100, f"(#100) {details}")


def missing(name: str) -> GraphFailure:
    """Error 131008: a required parameter is missing."""
    return GraphFailure(400, 131008, details=f"The parameter {name} is required.")


def invalid(details: str) -> GraphFailure:
    """Error 131009: a parameter's value is not valid."""
    return GraphFailure(400, 131009, details=details)


def bad_token() -> GraphFailure:
    """Error 190, HTTP 401: no bearer token, or not the one Meta issued."""
    return GraphFailure(401, 190)


def missing_node(node: str, method: str) -> GraphFailure:
    """What Graph answers a call on an id it does not know (or that does not support the call)."""
    return GraphFailure(
        400,
        100,
        f"Unsupported {method.lower()} request. Object with ID '{node}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api",
        type_="GraphMethodException",
        subcode=33,
    )
