"""Exit 0 once a Kafka broker answers a metadata request, 1 after the timeout.

Usage: python scripts/kafka_ready.py HOST:PORT [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiokafka import AIOKafkaClient


async def probe(bootstrap: str, timeout: float) -> bool:
    """True when the broker at ``bootstrap`` returns cluster metadata in time."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    return 0 if asyncio.run(probe(args.bootstrap, args.timeout)) else 1


if __name__ == "__main__":
    sys.exit(main())
