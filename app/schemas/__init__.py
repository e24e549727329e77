"""Pydantic schemas: the envelope and every request and response."""
