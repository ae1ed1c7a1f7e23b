# The one version: the package's (pyproject.toml reads it) and the API's (the
# OpenAPI document's info.version).
__version__ = "1.0.0"

from .celery import app as celery_app

__all__ = ("__version__", "celery_app")
