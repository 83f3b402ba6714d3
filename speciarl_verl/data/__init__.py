"""Static data shipped with the package (class-name lists of the benchmarks)."""
