"""`bench run` and `bench worker`: searches, trials in child processes, re-trainings."""
