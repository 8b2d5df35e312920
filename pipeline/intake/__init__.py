"""The HTTP intake: browsers and SDKs post RUM events; custom actions go to the raw topic.

Transport-free parts live in :mod:`~pipeline.intake.events` (parse, stamp,
route), :mod:`~pipeline.intake.body` (encodings) and
:mod:`~pipeline.intake.clientip` (trusted proxies); the aiohttp application
is :mod:`~pipeline.intake.server` and the process :mod:`~pipeline.intake.run`.
This package module imports nothing heavy: settings validation uses
:mod:`~pipeline.intake.config` before the server is loaded.
"""
