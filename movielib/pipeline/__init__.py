"""Ray Data stage classes and the graph that wires them (resources declared per stage)."""
