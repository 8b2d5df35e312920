"""`rum-pipeline serve`: the query API over a live view, the monitors' evaluation and the explorer page.

``app.create_app`` builds the aiohttp application from route modules (``api``,
``health``, ``monitors_api``, ``explorer``); a new part of the service is one
more module with its own ``add_routes(app)``.
"""
