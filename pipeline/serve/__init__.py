"""`rum-pipeline serve`: the query API over a live view (and later the monitors and the explorer).

``app.create_app`` builds the aiohttp application from route modules (``api``,
``health``); a new part of the service is one more module with its own
``add_routes(app)``.
"""
