"""The core: what every layer may use and nothing above it. Errors, settings, output, file locks, dependency
graphs, the one holder record and liveness test of a process, pid files, UTC time formats."""
