"""`bench report`, in pipeline order: `collect` reads the runs (through `harness.tracking`) and
the trials (through `harness.search`) into one table, `selection` says which runs count,
`comparisons` and `verdicts` weigh each backend against the study's baseline, `render`, `tables`
and `charts` show it, and `build` joins them into files and an MLflow run."""
