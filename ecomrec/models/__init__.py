"""Models: language models, sentence encoders, retrieval indexes."""
