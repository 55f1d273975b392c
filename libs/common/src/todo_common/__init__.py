"""Shared library of the todo services."""
