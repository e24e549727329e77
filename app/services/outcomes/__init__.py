"""Closed-loop learning: the outcome store, drift monitoring of the active model, and the
scheduler that retrains from the store by itself (through the same quality gate)."""
