"""The README quickstart: one edit, awaited over the shared event stream, saved to disk.

Run it against hub.oxen.ai (set OXEN_API_KEY), or offline against the local server:

    .venv/bin/oxedit serve --port 8000 &
    export OXEN_BASE_URL=http://127.0.0.1:8000 OXEN_API_KEY=oxen-test-key
    .venv/bin/python examples/quickstart.py
"""

import asyncio
from pathlib import Path

import oxedit

IMAGE = Path(__file__).parent / "images" / "night.jpg"
OUT = Path("out")  # results go here, never beside the code (`out/` is in .gitignore)


async def main() -> None:
    async with oxedit.Client() as client:  # key and URL from OXEN_API_KEY / OXEN_BASE_URL
        job = await client.submit(prompt="Add a funny hat", image=IMAGE)
        print("enqueued", job.id)
        gen = await job  # resolved by the one shared event stream, no polling
        await gen.save(OUT / "night-hat.png")
        print("saved", OUT / "night-hat.png", "from", gen.url)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    asyncio.run(main())
