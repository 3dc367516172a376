"""Two threads: slow works 100 ms, fast 10 ms. The main thread joins slow first, then fast,
which had ended about 90 ms before that join: a later fast changes nothing until it ends
after slow does, and then only by how much later it ends."""

import threading
import time

slow = threading.Thread(target=time.sleep, args=(0.1,), name="slow")
fast = threading.Thread(target=time.sleep, args=(0.01,), name="fast")
slow.start()
fast.start()
slow.join()
fast.join()
