"""The conformance tests. Ids are '<file>::<test>[<params>]' and stay stable across
releases: a test is renamed only with a note in the changelog."""
