"""Deployment: faster encoders (int8, ONNX Runtime), an ANN index, the served API and its load test."""
