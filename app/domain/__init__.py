"""The service's vocabulary and persisted records: no HTTP, no services, no heavy imports.

Everything else may import it; it imports nothing from `app` outside itself.
"""
