"""`python -m bench`: the exporter measured against its baseline and its limit.

Every case runs on this machine, in the same invocation as the baseline (what users would
otherwise run) and the limit (the most the machine allows for the same work), and reports
the medians side by side with their ratios. See docs/performance.md.
"""
