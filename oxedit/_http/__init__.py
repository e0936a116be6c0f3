"""The HTTP layer: the transport (the only importer of aiohttp), its sessions, API calls with
retries, the retry engine, event hooks and SSE framing. Imports only the base modules.
"""
