"""What the tests and the benchmarks share: serve.py or a static file server started on a free
local port, Debian's Chromium driven headless, and the corpus the in-browser reader is held to."""
