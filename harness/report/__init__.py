"""`bench report`: runs collected from the stores, verdicts with intervals, tables and charts."""
