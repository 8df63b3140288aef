//! Regression tests for faults found by reading the code: each provokes the fault with real
//! processes and checks that nothing is lost, nothing loops and errors say what they are.

mod data;
mod outages;
mod workers;
