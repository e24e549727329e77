"""Version 1 of the public API: thin routers over the services."""
