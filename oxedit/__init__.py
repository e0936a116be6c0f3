"""oxedit: asyncio SDK for Oxen.ai image editing."""
