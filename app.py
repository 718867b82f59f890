"""Entry point: ``gunicorn app:app`` or ``flask --app app run``."""

import sys

from whatsapp import ConfigError, create_app

try:
    app = create_app()
except ConfigError as error:
    print(f"Configuration error: {error}", file=sys.stderr)
    sys.exit(3)  # gunicorn's "worker failed to boot": the master stops instead of restarting forever
