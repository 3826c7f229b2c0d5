"""Front ends: the protocols clients speak (HTTP/REST, gRPC, Prometheus metrics).

A front end turns wire bytes into protocol-neutral requests and talks only to the
`Server` (server.py); it never reaches into models, scheduling or memory directly.
Nothing below the server imports from here.
"""
