"""Inference runtime: weight files, devices, PyTorch and ONNX Runtime backends, and the few
network operations written here in plain PyTorch (deformable convolution)."""
