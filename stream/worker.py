"""Running the Faust worker: logging, the app, and Faust's own Worker service
(which handles SIGTERM/SIGINT with a graceful stop: commit, flush, exit)."""

from __future__ import annotations

from typing import NoReturn

import faust

from stream.app import create_app
from stream.settings import Settings


def run_worker(settings: Settings) -> NoReturn:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
