"""Exit 0 once a Kafka broker answers a metadata request, 1 after the timeout.

Usage: python scripts/kafka_ready.py HOST:PORT [--timeout SECONDS] [--secure]

With --secure the probe connects as the pipeline would, with the
RUM_SECURITY_PROTOCOL, RUM_SASL_* and RUM_SSL_* settings of the environment;
without it, in plain text (the local broker's PLAINTEXT listener).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from aiokafka import AIOKafkaClient


async def probe(bootstrap: str, timeout: float, auth: dict[str, Any] | None = None) -> bool:
    """True when the broker at ``bootstrap`` returns cluster metadata in time."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **(auth or {})
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bootstrap")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument(
        "--secure", action="store_true", help="use the RUM_* security settings (TLS, SASL) of the environment"
    )
    args = parser.parse_args()
    auth = None
    if args.secure:
        from pipeline.errors import PipelineError
        from pipeline.kafka_auth import client_kwargs
        from pipeline.settings import load_settings

        try:
            auth = client_kwargs(load_settings())
        except PipelineError as exc:
            print(f"kafka_ready: {exc}", file=sys.stderr)
            return 2
    return 0 if asyncio.run(probe(args.bootstrap, args.timeout, auth)) else 1


if __name__ == "__main__":
    sys.exit(main())
