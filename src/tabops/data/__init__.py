"""Data in: CSV files read and checked against the spec, and `tabops init`'s starter spec."""
