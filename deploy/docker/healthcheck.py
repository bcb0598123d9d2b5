"""Container health check: GET http://127.0.0.1:$PORT<path>, exit 0 on a 2xx answer.

The runtime image has no curl; this needs only the standard library.
Usage: python /app/healthcheck.py [/readyz|/healthz]   (default /healthz)
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    port = os.environ.get("PORT", "8001")
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
