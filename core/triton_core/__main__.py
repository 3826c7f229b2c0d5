"""``python -m triton_core``: the same as ``tritonserver``."""

if __name__ == "__main__":
    from .launcher import tritonserver_main

    tritonserver_main()
