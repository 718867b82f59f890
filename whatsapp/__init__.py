"""WhatsApp Cloud API service that answers each customer with an agent."""

from .config import ConfigError, Settings, load_settings
from .handler import AgentWhatsAppRequestHandler
from .service import create_app

__all__ = ["AgentWhatsAppRequestHandler", "ConfigError", "Settings", "create_app", "load_settings"]
