"""``python -m autotag.web``: the web service as ``autotag cluster up`` starts it (logs go to
stderr, which the cluster writes to <run_dir>/logs/web.log)."""

import logging
import sys

from autotag.config import settings
from autotag.web.app import serve

if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    serve(settings())
