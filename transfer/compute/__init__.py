"""Where and how the arithmetic runs: device, precision, memory layout, data-parallel processes."""
