"""What both live protocols share: frames, JSON messages, tokens and the runtime folder.

The control channel (``willowisp.agent.control`` serves it, ``willowisp.cli.ctl`` is its
client) and the native stream (``willowisp.agent.stream`` sends, ``willowisp.collect``
receives) are specified in ``docs/protocols.md``. Their common bytes live here, below the
agent, the collector and the CLI alike, so none of them imports another's package:

- ``frames``: the frame (magic, u32 LE length, JSON object), its reading and writing,
  request ids, replies and the constant-time token comparison;
- ``discovery``: the private per-user runtime folder and the descriptor files in it.

Standard library only, and nothing imported here at package level: the agent loads these
modules inside the observed program, at its start.
"""
