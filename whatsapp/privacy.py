"""What logs may show of a customer."""


def mask(phone: str | None) -> str:
    """A phone number (or business-scoped id) as logs show it: the last four characters only."""
    return f"…{phone[-4:]}" if phone else "(unknown sender)"


def mask_secret(secret: str) -> str:
    """Enough of a token to tell which one is set, never enough to use it."""
    return f"{secret[:4]}…{secret[-4:]}" if len(secret) >= 16 else f"{len(secret)} characters"
