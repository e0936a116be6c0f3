"""Fetching results: bounded downloads that refresh expired URLs (atomic files: `_atomic`)."""

from __future__ import annotations

import base64
import binascii
import logging

from .._exceptions import (
    ClientStateError,
    DownloadError,
    InvalidRequestError,
    ResponseTooLargeError,
    TransportError,
)
from .._http.api import Api
from .._http.retry import Verdict, classify_download
from .._http.transport import Transport, url_problem
from .._models import EditResult, Generation
from .._response import Response, parse_retry_after
from .inputs import sniff_mime

__all__ = ["Downloader"]

log = logging.getLogger("oxedit")


class Downloader:
    """Downloads result images; concurrency is bounded by the transport's file session."""

    def __init__(self, transport: Transport, api: Api):
        self._transport = transport
        self._api = api  # its retry policy and counters, for `with_options` views too

    async def read(self, result: Generation | EditResult, *, index: int = 0) -> bytes:
        if isinstance(result, EditResult):
            if not 0 <= index < len(result.images):
                raise InvalidRequestError(
                    f"index={index} is out of range: the edit returned "
                    f"{len(result.images)} image(s)"
                )
            image = result.images[index]
            if image.b64_json is not None:
                try:
                    return base64.b64decode(image.b64_json)
                except (binascii.Error, ValueError) as exc:
                    raise DownloadError(
                        f"the edit's b64_json is invalid: {exc}", generation_id=""
                    ) from exc
            if image.url is None:
                raise DownloadError("the edit returned no image URL", generation_id="")
            resp = await self._download(image.url, "")
            return self._check_download(resp, "", image.url)
        if result.status != "succeeded" or not result.url:
            raise DownloadError(
                f"generation {result.id} has status {result.status!r} and no result to download",
                generation_id=result.id,
            )
        resp = await self._download(result.url, result.id)
        if resp.status in (403, 404, 410):
            log.info("result URL of %s refused (%d); fetching a fresh one", result.id, resp.status)
            fresh = await self._api.get_row(result.id)
            url = fresh.result_url or fresh.url
            if url:
                resp = await self._download(url, result.id)
        return self._check_download(resp, result.id, result.url)

    async def _download(self, url: str, generation_id: str) -> Response:
        """The answer to a GET of `url`, retried (honouring `Retry-After`) while it is a 429,
        a 5xx, or no answer at all."""
        what = f"download of {generation_id or 'edit'} result"
        problem = url_problem(url)
        if problem is not None:  # nothing to retry: the URL itself is unusable
            raise DownloadError(
                f"{what}: the result URL {url.partition('?')[0]!r} is unusable ({problem}); "
                "ask the API for the row again (client.get(id)) or report the URL to Oxen",
                generation_id=generation_id,
            )
        retrying = self._api.retrying()
        async for _ in retrying:
            try:
                resp = await self._transport.download(url)
            except ResponseTooLargeError as exc:
                raise DownloadError(f"{what}: {exc}", generation_id=generation_id) from None
            except ClientStateError:
                raise
            except TransportError as exc:
                error: Exception = exc
                verdict = Verdict.RETRY  # a GET: safe to repeat, whatever reached the host
                retry_after = None
            else:
                verdict = classify_download(resp.status)
                if verdict is not Verdict.RETRY:
                    return resp  # the caller refreshes an expired URL, or says what came
                error = DownloadError(
                    f"{what}: HTTP {resp.status}",
                    generation_id=generation_id,
                    status_code=resp.status,
                )
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            # Raised as it is when the retries are spent.
            final = DownloadError(f"{what} failed: {error}", generation_id=generation_id)
            final.__cause__ = error
            retrying.failed(final, verdict, retry_after)
        raise AssertionError("unreachable: the loop returns or raises")

    @staticmethod
    def _check_download(resp: Response, generation_id: str, url: str) -> bytes:
        host = url.split("/")[2] if "//" in url else url
        what = f"download of {generation_id or 'edit'} result from {host}"
        if not 200 <= resp.status < 300:
            raise DownloadError(
                f"{what} answered HTTP {resp.status}",
                generation_id=generation_id,
                status_code=resp.status,
            )
        if sniff_mime(resp.body) is None:
            kind = resp.headers.get("Content-Type", "no content type")
            raise DownloadError(
                f"{what} is not an image ({kind}, {len(resp.body)} bytes, starting "
                f"{resp.body[:60]!r}); an error page or a wrong URL came instead",
                generation_id=generation_id,
                status_code=resp.status,
            )
        return resp.body
