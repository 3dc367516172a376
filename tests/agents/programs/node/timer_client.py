"""The client of timer_handler.js: GET /await, then GET /callback, one request each."""

import sys
import urllib.request

for path in ("/await", "/callback"):
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{path}", timeout=30) as resp:
        print(path, resp.status, resp.read().decode().strip())
