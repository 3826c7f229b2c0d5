"""The KServe v2 HTTP/REST front end with Triton's extensions.

server.py is the HTTP/1.1 transport (httptools); app.py routes requests; infer.py and
plan.py decode and encode inference bodies (JSON and the binary-tensor extension);
body.py reads and (de)compresses bodies; generate.py is the generate extension (SSE).
"""
