"""The sync client in a plain script: no `async`, no `asyncio.run`.

`oxedit.SyncClient` runs the async client on an event loop in a thread of its own, so the
same code also works where `asyncio.run` fails (inside a running loop), and from threads.

    .venv/bin/oxedit serve --port 8000 &
    export OXEN_BASE_URL=http://127.0.0.1:8000 OXEN_API_KEY=oxen-test-key
    .venv/bin/python examples/script.py
"""

from pathlib import Path

import oxedit

IMAGES = Path(__file__).parent / "images"


def main() -> None:
    with oxedit.SyncClient() as client:  # key and URL from OXEN_API_KEY / OXEN_BASE_URL
        job = client.submit(prompt="Add a funny hat", image=IMAGES / "night.jpg")
        print("enqueued", job.id)
        gen = job.result()  # blocks; Ctrl-C here cancels the job, so nothing runs unwatched
        client.save(gen, "night-hat.png")
        print("saved night-hat.png")

        # A small batch, results in the order they finish; the images go to script-out/.
        requests = [
            oxedit.EditRequest(image=str(path), prompt="Mirror the scene")
            for path in sorted(IMAGES.iterdir())
        ]
        for result in client.map(requests, output_dir="script-out"):
            print(result.status, result.output)


if __name__ == "__main__":
    main()
