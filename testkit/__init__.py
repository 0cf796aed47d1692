"""What the tests and the benchmarks share: tiny models made on the spot, servers on free
loopback ports, a raw client for Gradio's queue, the browser, and the hostile-input strategies.

Nothing here downloads anything; everything it writes goes to directories its caller names.
"""
