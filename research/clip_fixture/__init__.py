"""Tiny open_clip CLIP test fixture: shape/caption generator, training and evaluation."""
