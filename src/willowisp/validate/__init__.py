"""The CI gate behind ``willowisp validate``: is every recorded trace whole?

Layers, each importing only the ones above it (and ingest/causality/analysis below):

- ``contract_spec``: propagation contracts as declared in ``willowisp.toml`` (stdlib only,
  so ``project_config`` can parse them without loading numpy);
- ``problems``: the Problem value, its kinds and stable ids;
- ``trace_index``: one row per W3C trace id (its start, its entry), ``--last N``;
- ``checks`` (hops, files, agents) and ``contracts`` (declared paths): trace -> problems;
- ``gate``: runs the checks and applies ``--last`` and the baseline;
- ``baseline``, ``junit``, ``sarif``: the files a pipeline reads and writes;
- ``replay_against``: re-issue recorded entry requests against staging, then gate those.

Nothing is imported here, so importing ``willowisp.validate.contract_spec`` stays cheap.
"""
