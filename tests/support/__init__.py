"""Helpers the tests share: building a small project, training in-process. Not test modules."""
