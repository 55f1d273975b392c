"""The ASGI application object that each hypercorn worker imports (`todo_api.asgi:app`).

Workers are fresh processes, so this is where each one reads its settings and sets up logging.
"""

from todo_api.app import create_app
from todo_common.logs import configure_logging
from todo_common.settings import load_settings

settings = load_settings()
configure_logging(settings, "api")
app = create_app(settings)
