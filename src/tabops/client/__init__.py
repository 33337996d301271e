"""HTTP clients of a running tabops server (the demo traffic generator)."""
