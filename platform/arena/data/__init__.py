"""Datasets and their images, on disk and in the store."""
