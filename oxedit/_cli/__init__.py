"""The `oxedit` command line, with its progress display and the HTML report. The top layer.
"""
