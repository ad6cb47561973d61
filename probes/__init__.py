"""What anbo measures: pure, vectorized numpy/scipy kernels and per-kind workers."""
