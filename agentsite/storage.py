"""Static files: hashed names, gzip copies, served by servestatic with far-future
caching (`manage.py collectstatic --noinput` writes them to STATIC_ROOT)."""

import logging

from servestatic.storage import CompressedManifestStaticFilesStorage

logger = logging.getLogger(__name__)


class StaticStorage(CompressedManifestStaticFilesStorage):
    # The room page's ES modules import each other ("./dom.js"): rewritten to the
    # hashed names, so a deployment never mixes an old module with a new one.
    support_js_module_import_aggregation = True

    def stored_name(self, name: str) -> str:
        """The hashed name, or `name` itself when the manifest lacks it.

        A template naming a file that collectstatic did not see (a stale
        STATIC_ROOT, a typo) would otherwise raise ValueError in `{% static %}`
        and turn the whole page into a 500 for a missing stylesheet.
        """
        try:
            return super().stored_name(name)
        except ValueError:
            logger.warning(
                "static file %r is not in the manifest: run collectstatic", name
            )
            return name
