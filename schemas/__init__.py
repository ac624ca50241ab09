"""Pydantic contracts of rowgate: tool requests and results, and the config file's shape."""
