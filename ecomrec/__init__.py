"""ecomrec: helpers for the course on LLM-era data augmentation for e-commerce search and recommendation."""

__version__ = "0.1.0"
