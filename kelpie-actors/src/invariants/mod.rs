//! Invariant checkers, reusable by users' tests: each records what the system did and reports
//! the first violation with the facts needed to understand it.
