"""The first service of the Python -> Node -> Python hop: one GET to the Node relay."""

import sys
import urllib.request

with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/relay?user=alice", timeout=30) as resp:
    body = resp.read()
print(resp.status, body.decode())
sys.exit(0 if resp.status == 200 and body == b"relay:leaf" else 1)
