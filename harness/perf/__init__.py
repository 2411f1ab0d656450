"""`bench perf`: the plan, the measuring child processes, and the tables they become."""
