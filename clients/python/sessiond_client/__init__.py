"""Python client for sessiond, the session registry for AI coding CLIs.

::

    from sessiond_client import Client

    with Client() as c:                       # $SESSIOND_ADDR or 127.0.0.1:7420, $SESSIOND_TOKEN
        with c.turn("plan:42") as t:          # acquire (waits for a held lease), renew, complete
            print(t.decision)                 # {"action": "resume", "cliSessionId": ...} or fresh
            t.ok("new-cli-session-id", cost_usd=0.01)

See :class:`Client`, :class:`AsyncClient`, :func:`run_claude` and :mod:`sessiond_client.errors`.
"""

from ._version import __version__
from ._wire import DEFAULT_ADDR, DEFAULT_MAX_FRAME_BYTES, DEFAULT_TIMEOUT, PROTOCOL_VERSION, Address, parse_address
from .aio import AsyncClient, connect_async
from .claude import ClaudeResult, ClaudeResumeFailed, run_claude, transcript_path
from .client import Client, connect
from . import errors as _errors
from .errors import *  # noqa: F401,F403 -- every error class, as listed in errors.__all__
from .turn import AsyncTurn, Turn, TurnError

__all__ = [
    "__version__",
    "Client",
    "AsyncClient",
    "connect",
    "connect_async",
    "Turn",
    "AsyncTurn",
    "TurnError",
    "run_claude",
    "ClaudeResult",
    "ClaudeResumeFailed",
    "transcript_path",
    "Address",
    "parse_address",
    "DEFAULT_ADDR",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
]
__all__ += _errors.__all__
