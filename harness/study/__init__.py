"""A study file: its tables (`tables`), its knobs (`knobs`), where the files are (`files`), the
whole file and the flat `Study` it loads into (`schema`), and its one-line errors (`errors`)."""
