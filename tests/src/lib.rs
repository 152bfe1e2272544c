//! Helpers live in tests/common; this crate has only integration tests.
