"""Answers every paused run of the queue with ``True`` and re-queues it, until all are completed.

Usage: ``python queue_answerer.py URL TOTAL``. A process of its own, as a
person answering from another host would be; prints how many it answered.
A journal failure (the server restarting) is waited out: it tries again.
"""

from __future__ import annotations

import os
import sys

import trio
from trioflow.persistence import RunSummary, StoreError
from trioflow.runtime import RunNotResumable, Runtime, open_runtime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queue_pipeline import pipeline


async def answer_all(url: str, total: int) -> int:
    answered = 0
    async with open_runtime(store=url) as runtime:
        while True:
            try:
                runs = await runtime.store.list_runs()
                if sum(run.status == "completed" for run in runs) == total:
                    return answered
                answered += await answer(runtime, runs)
            except StoreError:
                pass  # the server is restarting: the next round tries again
            await trio.sleep(0.05)


async def answer(runtime: Runtime, runs: list[RunSummary]) -> int:
    answered = 0
    for run in runs:
        if run.status != "paused":
            continue
        try:
            await runtime.requeue(run.run_id, True, pipeline=pipeline)
        except RunNotResumable:  # claimed since it was listed: answered next time
            continue
        answered += 1
    return answered


if __name__ == "__main__":
    print(trio.run(answer_all, sys.argv[1], int(sys.argv[2])))
