"""Conditions a network can take: class labels, captions, low-resolution images."""
