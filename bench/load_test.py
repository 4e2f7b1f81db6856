"""Hosted load test: N concurrent browser sessions over loopback through every page of the app.

Starts `streamlit run app.py` (FOCALSCOPE_HOSTED=1) on a free 127.0.0.1 port, opens N contexts of one headless
Chromium (/usr/bin/chromium), and in each opens every page through the sidebar and does one interaction per page
with the sample data. Prints the median and max step time, each step's figures and the server's peak RSS (VmHWM).
The scenario is tests/e2e/load.py, the same one tests/e2e/test_load.py asserts on.

    python bench/load_test.py --sessions 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.load import run_load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10, help="concurrent browser sessions (default 10)")
    parser.add_argument("--step-timeout", type=float, default=120, help="seconds one step may take (default 120)")
    parser.add_argument("--total-timeout", type=float, default=300, help="seconds the run may take (default 300)")
    parser.add_argument("--not-hosted", action="store_true", help="serve without FOCALSCOPE_HOSTED=1")
    args = parser.parse_args()
    report = run_load(
        args.sessions,
        step_timeout_s=args.step_timeout,
        total_timeout_s=args.total_timeout,
        hosted=not args.not_hosted,
    )
    print(report.summary())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
