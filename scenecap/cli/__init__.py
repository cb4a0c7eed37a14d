"""The `scenecap` command line: service processes, key management and local tools."""
