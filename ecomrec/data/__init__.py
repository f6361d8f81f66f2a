"""Data layer: loaders for both datasets, cleaning, schema checks, splits and the prepare step."""
