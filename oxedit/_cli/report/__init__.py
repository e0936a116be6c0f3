"""The HTML report of a batch (`report.html`): its data, page, thumbnails and assets.
"""
