"""The chain workload alone: ``python bench/chain.py`` is ``python bench/run.py chain``.

Kept because the README points here. The measurement itself lives in
``bench/workloads/chain.py``; options are those of ``bench/run.py``.
"""

from __future__ import annotations

import sys

import run

if __name__ == "__main__":
    run.main(["chain", *sys.argv[1:]])
