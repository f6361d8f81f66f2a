"""Data augmentation: synthetic queries, quality filters, negative sampling, sequence augmentation."""
