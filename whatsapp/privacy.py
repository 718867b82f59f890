"""What logs may show of a customer."""


def mask(phone: str | None) -> str:
    """A phone number (or business-scoped id) as logs show it: the last four characters only."""
    return f"…{phone[-4:]}" if phone else "(unknown sender)"
