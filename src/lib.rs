//! converge: make every server provably match its role.
