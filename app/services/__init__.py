"""Model services: built once at start-up, they hold the models and do the work."""
