"""Two locks whose names share a prefix, db and db_pool, each held 20 ms by its own thread
with nothing between the two: resource:db must lengthen db's hold alone, not db_pool's
(the substring match it used to be took both)."""

import threading
import time

db = threading.Lock()
db_pool = threading.Lock()


def hold(lock: threading.Lock) -> None:
    with lock:
        time.sleep(0.02)


user = threading.Thread(target=hold, args=(db,), name="user")
pooler = threading.Thread(target=hold, args=(db_pool,), name="pooler")
user.start()
pooler.start()
user.join()
pooler.join()
