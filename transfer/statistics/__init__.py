"""The statistics behind the verdict and the paired comparisons: one variance model, the tests and the decision rule.
Plain numpy on arrays of per-image correctness; nothing here reads or writes a file, so a test or a benchmark can
simulate runs through the very functions the plots stage applies.
"""
