"""Helpers shared by the tests and the benchmarks: synthetic studies with a known truth
(``synthetic``), a real PostgreSQL server on loopback (``postgres``), small spaces (``spaces``).
Not used by the service itself."""
