"""The harness the tests and the benchmarks share: real servers on loopback (redis-server, an RTSP
camera, the backend's upload API), synthetic media, readers of /proc, a recorder run as a process, the
whole box under supervisord (and installed as deploy/install.sh lays it out), and this checkout itself.

Neither production nor tests: it is not shipped (pyproject's `packages.find` leaves it out), it may import
the project, and the project never imports it (tests/test_layering.py).
"""
