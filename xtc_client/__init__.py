"""The XTC service's HTTP client: `xtc jobs ...` and `xtc sweeps ...` (typer + rich + httpx; never torch).

Plugged into the `xtc` command through the ``xtc.cli`` entry point, and runnable on its own as
``python -m xtc_client``.
"""
