"""The API's endpoints as typed calls: inputs, schema validation, uploads, results, the blocking
edit, the billing history. Imports `_http` and the base.
"""
