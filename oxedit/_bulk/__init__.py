"""Bulk runs: `client.map`, its journal, resume, per-item finish and the cost guard. Imports the
engine and below.
"""
