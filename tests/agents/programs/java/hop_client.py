"""Calls the Java inventory service once with urllib (Python agent); prints the status."""

import sys
import urllib.request

with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/inventory?sku=7") as resp:
    resp.read()
    print(resp.status)
