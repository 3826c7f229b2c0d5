"""Memory: where tensor bytes live.

_native is the C layer (cffi): POSIX shared memory, tensor descriptors, the BYTES
codec. shm.py maps regions; registry.py is the system shared-memory extension's
registry; io.py reads inputs from and writes outputs to registered regions;
tensors.py holds tensor descriptors; bytes_codec.py encodes and decodes BYTES.
Imports only the contract's leaf modules (errors, dtypes).
"""
