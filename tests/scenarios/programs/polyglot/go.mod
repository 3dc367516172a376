module github.com/willowisp/willowisp/tests/scenarios/programs/polyglot

go 1.26.0

require github.com/willowisp/willowisp/agents/go v0.0.0

replace github.com/willowisp/willowisp/agents/go => ../../../../agents/go
