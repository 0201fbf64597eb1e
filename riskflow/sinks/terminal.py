"""The terminal sink: alerts printed for people or machines (``riskflow alerts tail``, the demo).

Each (id, revision) is printed once, a later revision marked, one at or below a revision
already printed dropped (riskflow/feedprint.py has the lines' form); a message that is no
alert is skipped with one line on ``err``. It reads the topic from the beginning on every
run and commits nothing (no consumer group).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from riskflow.core.alerts import Alert
from riskflow.core.textsafe import bounded
from riskflow.feedprint import Tracker, render
from riskflow.sinks.base import Sink
from riskflow.store.base import Incoming


class TerminalSink(Sink):
    """Print each alert of a batch that ``keep`` accepts, as a line of text cut to ``width``
    cells or (``as_json``) as its JSON, on ``out``; see the module doc.

    >>> from riskflow.sinks.base import decode_message
    >>> import asyncio, io
    >>> sink = TerminalSink(out=io.StringIO(), err=io.StringIO())
    >>> asyncio.run(sink.handle([decode_message(b"junk", "riskflow.alerts/0@1")]))
    True
    >>> sink.err.getvalue()[:55]
    'skipped a message that is not an alert at riskflow.aler'
    """

    name = "terminal"
    group_id = None

    def __init__(
        self,
        *,
        as_json: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
        keep: Callable[[Alert], bool] = lambda a: True,
        width: int | None = None,
    ) -> None:
        self.as_json = as_json
        self.out = out or sys.stdout
        self.err = err
        self.keep = keep
        self.width = width
        self.tracker = Tracker()

    @classmethod
    def example(cls, workdir: Path) -> TerminalSink:
        return cls(out=io.StringIO(), err=io.StringIO())

    async def handle(self, batch: Sequence[Incoming]) -> bool:
        for it in batch:
            a = it.alert
            if a is None:  # junk on the topic: say so, go on
                why = f"{it.error_class.rsplit('.', 1)[-1]}: {it.error}" if it.error_class else it.error
                line = f"skipped a message that is not an alert at {it.source}: {why}"
                print(bounded(line, 300), file=self.err or sys.stderr, flush=True)
                continue
            if not self.keep(a):
                continue
            fresh, prev = self.tracker.see(a)
            if fresh:
                self.out.write(render(a, it.raw, prev, self.as_json, self.width) + "\n")
        self.out.flush()
        return True
