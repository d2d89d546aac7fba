"""Process-level profilers (perf, and in issue 5 nsys and valgrind): parsers and availability
checks as plain modules, imported only when a test asks for a profiler."""
