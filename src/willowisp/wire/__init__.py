"""Context propagation formats: parse and format what crosses the wire. Standard library only."""
