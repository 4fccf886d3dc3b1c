"""The Celery app for flower (``celery -A arena.execution.flower flower``), which needs one at
import time: built here from the environment's settings, for that entry point only."""

from arena.config import get_settings
from arena.execution.broker import celery_app

app = celery_app(get_settings())
