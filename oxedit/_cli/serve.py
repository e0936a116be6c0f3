"""`oxedit serve`: the local Oxen server as a long-lived process, with the faults a user needs
to test an app against it, and where the CLI's embedded server keeps its state.

Flags are read as text and checked here rather than by argparse types, so a bad value ends the
command with one line that names the flag and the value (exit status 2), not a usage screen.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..server import Faults

__all__ = [
    "add_serve_arguments",
    "embedded_state_dir",
    "faults_from_args",
    "is_loopback",
    "serve",
]

#: The embedded server's state folder, beside the batch journal.
EMBEDDED_STATE_FOLDER = ".oxedit-local-server"
DEFAULT_JOURNAL_NAME = ".oxedit-journal.sqlite"


class FlagError(ValueError):
    """A flag's value is unusable; the message names the flag and the value."""


def _number(raw: str, *, low: float = 0.0, high: float = math.inf, what: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise FlagError(f"is not a number; give {what}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise FlagError(f"is out of range; give {what}")
    return value


def _rate(raw: str) -> float:
    return _number(raw, high=1.0, what="a probability from 0 to 1")


def _count(raw: str, *, low: int = 0, what: str = "a whole number >= 0") -> int:
    try:
        value = int(raw)
    except ValueError:
        raise FlagError(f"is not a whole number; give {what}") from None
    if value < low:
        raise FlagError(f"is out of range; give {what}")
    return value


def _positive(raw: str) -> int:
    return _count(raw, low=1, what="a whole number >= 1")


def _seconds_range(raw: str) -> tuple[float, float]:
    what = "seconds as LOW or LOW,HIGH, with 0 <= LOW <= HIGH"
    low_raw, _, high_raw = raw.partition(",")
    low = _number(low_raw, what=what)
    high = _number(high_raw, what=what) if high_raw else low
    if high < low:
        raise FlagError(f"has HIGH below LOW; give {what}")
    return low, high


@dataclass(frozen=True)
class _Flag:
    flag: str
    field: str
    parse: Callable[[str], Any]
    help: str


# The `Faults` a user testing an app needs most; the rest stay a Python-API affair.
_FAULT_FLAGS = (
    _Flag("--latency", "latency", _seconds_range, "seconds each generation takes: S or LOW,HIGH"),
    _Flag("--failure-rate", "failure_rate", _rate, "chance a generation fails"),
    _Flag("--drop-event-rate", "drop_event_rate", _rate, "chance a completion event is lost"),
    _Flag("--duplicate-event-rate", "duplicate_event_rate", _rate, "chance an event is sent twice"),
    _Flag("--rate-limit-rate", "enqueue_429_rate", _rate, "chance an enqueue answers 429"),
    _Flag("--retry-after", "retry_after", _count, "Retry-After seconds sent with those 429s"),
    _Flag(
        "--enqueue-rate-limit",
        "enqueue_rate_limit",
        lambda raw: _number(raw, low=1e-9, what="enqueues per second > 0"),
        "the account's enqueue limit per second (a token bucket; 429 beyond it)",
    ),
    _Flag("--enqueue-burst", "enqueue_burst", _positive, "that bucket's size (default: 1 s)"),
    _Flag("--server-error-rate", "enqueue_5xx_rate", _rate, "chance an enqueue answers 503"),
    _Flag(
        "--cut-streams-after",
        "cut_stream_after_events",
        _positive,
        "end each event stream after this many events",
    ),
    _Flag("--seed", "seed", lambda raw: _count(raw, what="a whole number"), "seed of the faults"),
)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `oxedit serve`."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", default="8000", help="API port (0: any free port)")
    parser.add_argument("--api-key", help="the key clients must send (default: a test key)")
    parser.add_argument(
        "--state",
        metavar="DIR",
        help="keep generations and results in DIR across restarts (default: in memory)",
    )
    parser.add_argument("--workers", help="generations run at once (default: 8)")
    faults = parser.add_argument_group("faults (all off by default)")
    for flag in _FAULT_FLAGS:
        faults.add_argument(flag.flag, dest=flag.field, metavar="VALUE", help=flag.help)


def _checked(flag: str, raw: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(raw)
    except FlagError as exc:
        raise FlagError(f"{flag} {raw!r} {exc}") from None


def faults_from_args(args: argparse.Namespace) -> Faults:
    """`Faults` from the fault flags given (the others keep their defaults).

    Raises:
        FlagError: a value is unusable; the message names the flag and the value.
    """
    from ..server import Faults

    values = {
        flag.field: _checked(flag.flag, raw, flag.parse)
        for flag in _FAULT_FLAGS
        if (raw := getattr(args, flag.field, None)) is not None
    }
    return Faults(**values)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (`localhost`, 127.x, ::1); an empty
    host, a wildcard (`0.0.0.0`, `::`), another address or a name are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_host(host: str, api_key: str | None) -> None:
    """A server reachable from the network needs a key of its own: the default one is in the
    README, and the workers fetch any `input_image` URL a caller names (internal addresses
    included), so a published key would open this machine's network to anyone."""
    from ..server import DEFAULT_API_KEY

    if is_loopback(host):
        return
    if api_key is None or api_key == DEFAULT_API_KEY:
        given = "the published test key" if api_key else "no --api-key"
        raise FlagError(
            f"--host {host!r} is reachable from other machines, and {given} would let anyone "
            "use it: give --api-key with a secret of your own, or leave --host at 127.0.0.1"
        )


def serve(args: argparse.Namespace) -> int:
    """Run the server until Ctrl-C or SIGTERM; 2 (and one line on stderr) on a bad flag or a
    port it cannot listen on."""
    from ..server import run_server
    from ..server._constants import DEFAULT_WORKERS

    try:
        faults = faults_from_args(args)
        port = _checked("--port", args.port, lambda raw: _count(raw, what="a port, 0-65535"))
        if port > 65535:
            raise FlagError(f"--port {args.port!r} is out of range; give a port, 0-65535")
        workers = DEFAULT_WORKERS
        if args.workers is not None:
            workers = _checked("--workers", args.workers, _positive)
        _check_host(args.host, args.api_key)
    except FlagError as exc:
        print(f"oxedit serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        run_server(
            args.host, port, args.api_key, faults=faults, workers=workers, state_dir=args.state
        )
    except OSError as exc:
        # Binding fails before anything is served: say which port and what to do, not how.
        if exc.errno == errno.EADDRINUSE:
            reason = "is in use (another server?): stop what uses it, or give another --port"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            reason = "needs privileges here: give a --port from 1024 up"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = f"cannot be opened on --host {args.host!r}: give an address of this machine"
        else:
            raise
        print(f"oxedit serve: error: port {port} {reason} (0: any free port)", file=sys.stderr)
        return 2
    return 0


def embedded_state_dir(args: argparse.Namespace) -> Path | None:
    """Where the CLI's embedded server keeps its state: beside the journal of a batch, so a
    re-run finds its generations as it would on hub.oxen.ai; None (in memory) for commands
    that keep no journal."""
    out = getattr(args, "out", None)
    if out is None:
        return None
    journal = getattr(args, "journal", None)
    journal_path = Path(journal) if journal else Path(out) / DEFAULT_JOURNAL_NAME
    return journal_path.parent / EMBEDDED_STATE_FOLDER
