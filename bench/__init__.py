"""remask.bench: benchmark harness (results under bench/results/)."""
