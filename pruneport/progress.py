"""Stage-by-stage progress for long steps without a natural counter (export: tracing alone takes 20-30 s).

Each stage is logged (``-v`` shows the lines) and, when asked, drawn as a one-line tqdm bar on stderr whose elapsed
time keeps ticking during a long stage, so a terminal never sits silent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from types import TracebackType


class StageProgress:
    """``with StageProgress("export", stages, show) as stage: stage("tracing"); ...``.

    show: draw the bar on stderr (False: log lines only). Stages not in ``stages`` are allowed (the bar grows).
    """

    def __init__(self, name: str, stages: Sequence[str], show: bool, logger: logging.Logger | None = None) -> None:
        self.name = name
        self.log = logger or logging.getLogger("pruneport")
        self.bar = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=len(stages),
                desc=name,
                leave=False,
                dynamic_ncols=True,
                bar_format="{desc} [{elapsed}]",  # "export 1/2: tracing ..."; no rate: stages differ in length
            )
            self._ticker = threading.Thread(target=self._tick, name=f"{name}-progress", daemon=True)
            self._ticker.start()
        self._started = 0

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            bar = self.bar
            if bar is not None:
                bar.refresh()

    def __call__(self, stage: str) -> None:
        """Start ``stage`` (the previous one is done)."""
        self.log.info("%s: %s", self.name, stage)
        if self.bar is not None:
            if self._started:
                self.bar.update(1)
            if self._started >= self.bar.total:
                self.bar.total = self._started + 1
            self.bar.set_description_str(f"{self.name} {self._started + 1}/{self.bar.total}: {stage}")
        self._started += 1

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.bar is not None:
            if kind is None and self._started:
                self.bar.update(1)
            self.bar.close()
