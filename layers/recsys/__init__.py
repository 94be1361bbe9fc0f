"""Shared library of the recommendation service."""
