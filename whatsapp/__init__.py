"""WhatsApp Cloud API service that answers each customer with an agent."""

from .client import GraphClient
from .config import Settings, load_settings
from .errors import (
    BodyTooLarge,
    ConfigError,
    GraphAPIError,
    LostClaim,
    MediaRefused,
    MediaTooLarge,
    ReplyError,
    StoreUnavailable,
    UnreadableDocument,
    WhatsAppError,
)
from .handler import AgentWhatsAppRequestHandler
from .service import create_app

__all__ = [
    "AgentWhatsAppRequestHandler",
    "BodyTooLarge",
    "ConfigError",
    "GraphAPIError",
    "GraphClient",
    "LostClaim",
    "MediaRefused",
    "MediaTooLarge",
    "ReplyError",
    "Settings",
    "StoreUnavailable",
    "UnreadableDocument",
    "WhatsAppError",
    "create_app",
    "load_settings",
]
