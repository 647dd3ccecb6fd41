//! See tests/container.rs: this crate is an example of driving the image from a Rust test.
