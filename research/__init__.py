"""Offline research: data generation, training and evaluation (may import app, never the reverse)."""
