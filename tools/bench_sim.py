#!/usr/bin/env python
"""Closed-loop throughput benchmark: drivesim against highway-env in one run.

    python tools/bench_sim.py            # B in {1, 64, 256, 1024} x A in {32, 128}
    python tools/bench_sim.py --quick    # B in {1, 64, 256}, A = 32
    python tools/bench_sim.py --device cuda   # on a GPU machine, adds B = 4096
"""

import sys

from drivesim.sim.bench import main

if __name__ == "__main__":
    sys.exit(main())
