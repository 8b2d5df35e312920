"""The ceiling the worker is measured against: bench/enrich.py's aiokafka pass-through, as a process.

Consumes the raw topic of the ``RUM_*`` settings and produces every message
unchanged to the enriched topic (same partition), with no processing, then
exits once ``--events`` messages went through. bench/peers.py starts it as a
child process so that its CPU time can be measured like the worker's.

    python bench/passthrough_peer.py --events 40000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from enrich import passthrough

from pipeline.settings import load_settings
from pipeline.topics import ENRICHED, RAW


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, required=True, help="messages to pass through, then exit")
    args = parser.parse_args()
    settings = load_settings({k: v for k, v in os.environ.items() if k.startswith("RUM_")})
    source, target = settings.topic(RAW), settings.topic(ENRICHED)
    asyncio.run(passthrough(settings, source, target, args.events, settings.worker.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
