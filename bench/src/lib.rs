//! Benchmarks users run (replay, labs, reports).
