"""The medical-records example: synthetic notes, clinical rules, the pipeline's Python
steps, and the training of its three ONNX models (see ../README.md)."""
