module github.com/willowisp/willowisp/tests/ingest/programs/go_agent_names

go 1.26.0

require github.com/willowisp/willowisp/agents/go v0.0.0

replace github.com/willowisp/willowisp/agents/go => ../../../../agents/go
