//! Unit tests of the Job controller helpers.
