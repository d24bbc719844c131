"""The plots stage's work: results read back, paired statistics, cost, plot data, figures and the report page."""
