"""The vocabulary: event kinds, record types, identities. Depends on nothing else here."""
