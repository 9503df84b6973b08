"""Experimental: `ivs-proxy` on uvloop, to measure proposal "use uvloop" without editing
proxy/. Needs uvloop importable (e.g. PYTHONPATH=/tmp/bench-extra after
`pip install --target /tmp/bench-extra uvloop`). Not how users run the proxy."""

import asyncio
import sys

import uvloop

from proxy.cli import main

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
sys.exit(main())
