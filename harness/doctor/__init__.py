"""`bench doctor`: what each installed backend would run on, checked before a study starts.

`probe` runs in a child process per backend (frameworks never share a process) and reports the
facts and a one-batch parity check against the numpy reference (`harness.reference`); `check`
runs the probes, judges them and prints one table, with one line per problem.
"""
