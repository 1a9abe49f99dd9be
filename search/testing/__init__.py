"""Helpers shared by the tests and the benchmarks: synthetic studies with a known truth
(``synthetic``), a real PostgreSQL server on loopback (``postgres``), small spaces (``spaces``),
the ``search`` command run as a user runs it (``cli``), a running study's store read and waited
on (``studies``), faults inflicted on a running study (``faults``), small data set files
(``datasets``) and an HTML report holding a script (``reports``). Not used by the service itself."""
