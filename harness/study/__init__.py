"""A study file: its schema and validation (`schema`), and its one-line errors (`errors`)."""
