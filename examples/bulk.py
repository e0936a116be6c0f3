"""Bulk editing from code: every sample image, three edits each, resumable.

`client.map` keeps at most `concurrency` generations in flight and yields results as they
finish. The journal makes a re-run (after Ctrl-C or a crash) send only what was never sent.

    export OXEN_BASE_URL=http://127.0.0.1:8000 OXEN_API_KEY=oxen-test-key
    .venv/bin/python examples/bulk.py
"""

import asyncio
from pathlib import Path

import oxedit

IMAGES = Path(__file__).parent / "images"
EDITS = ["Make it black and white", "Mirror it", "Give it a vintage sepia look"]


async def main() -> None:
    requests = [
        oxedit.EditRequest(
            image=str(path),
            prompt=prompt,
            params={"aspect_ratio": "1:1"},
            name=f"{path.stem}-{i}",  # predictable output names
        )
        for path in sorted(IMAGES.iterdir())
        for i, prompt in enumerate(EDITS)
    ]
    async with oxedit.Client() as client:
        # Outputs and journal under out/ (in .gitignore), never beside the code.
        run = client.map(
            requests, concurrency=16, journal="out/bulk/journal.sqlite", output_dir="out/bulk"
        )
        async with run:  # leaving the block early cancels what is in flight, nothing leaks
            async for result in run:
                # One bad item is one "error" result; it never stops the batch.
                print(f"{result.status:9} {result.output or result.error}")


if __name__ == "__main__":
    asyncio.run(main())
