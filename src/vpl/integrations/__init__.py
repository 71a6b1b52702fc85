"""Adapters that plug vpl's personalized rewards into other libraries (TRL)."""
