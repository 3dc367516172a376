"""Hooks for ``redis.asyncio``: the records msg_redis.py makes for the sync client, made in
the task that awaits the command.

The command methods (``xadd``, ``xread``, ``xreadgroup``, ``publish``) are the sync client's
own, from the same mixins, returning a coroutine (or, queued in a pipeline, the pipeline):
msg_redis.py's wrappers serve both, and record an entry id or the entries read once the
coroutine is awaited. ``RedisCluster`` and both pipelines (``Pipeline``, ``ClusterPipeline``,
whose ``execute`` and ``reset`` are coroutines) are hooked alike; ``ClusterPubSub`` is a
``PubSub``. ``PubSub.handle_message``,
a coroutine function here, is called with the message already in: the receive is recorded
at the call. A blocking read (``block=``) and ``get_message`` with a timeout write the wait
through task_waits.drive, which keeps it open across the connection's own suspensions.

Commands on keys are data accesses as for the sync client (``execute_command``, recorded
once awaited; msg_redis.py says which). A hook of its own (waiting for ``redis.asyncio``,
which ``import redis`` loads first), so a failure here leaves the sync hooks in.
"""

from __future__ import annotations

import importlib
from typing import Any

from willowisp.agent import messaging as m
from willowisp.agent import msg_redis as sync
from willowisp.agent import recorder as _r
from willowisp.agent import task_waits
from willowisp.model.spec import Reason

_patches = m.Patches()


def _make_get_message(orig: sync.Fn) -> sync.Fn:
    async def get_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        if rec is None or sync.get_message_timeout(args, kwargs) == 0:
            return await orig(self, *args, **kwargs)
        key, wait = sync.get_message_wait(rec, self)
        call = orig(self, *args, **kwargs)
        try:
            if wait:
                msg = await task_waits.drive(call, wait, int(Reason.MESSAGE), key, blocked=True)
            else:
                msg = await call
        except BaseException as exc:
            if wait:
                sync.wake_failed(rec, wait, key, exc)
            raise
        sync.end_get_message_wait(rec, key, wait, msg)
        return msg

    return get_message


def _patch() -> None:
    client = importlib.import_module("redis.asyncio.client")
    cluster = importlib.import_module("redis.asyncio.cluster")
    sync.lib_dir()
    # The asyncio ClusterPipeline is no RedisCluster: it has the command mixins of its own.
    for cls in (client.Redis, cluster.RedisCluster, cluster.ClusterPipeline):
        sync.wrap(_patches, cls, sync.COMMANDS)
    for cls in (client.Redis, cluster.RedisCluster):  # keys: clients only, not pipelines
        sync.wrap(_patches, cls, sync.KEY_COMMANDS)
    for pipeline in (client.Pipeline, cluster.ClusterPipeline):
        sync.wrap(_patches, pipeline, sync.PIPELINE_METHODS)
    pubsub = (("handle_message", sync.make_handle_message), ("get_message", _make_get_message))
    sync.wrap(_patches, client.PubSub, pubsub)


_hook = m.DeferredHook("redis.asyncio", _patch, _patches, "install redis.asyncio")
install = _hook.install  # hooks redis.asyncio now if imported, else when the program imports it
uninstall = _hook.uninstall
