"""CLIP image comparison, text-to-image matching and embeddings."""
