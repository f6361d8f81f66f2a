"""Recommendation models for the Amazon Office data (05)."""
