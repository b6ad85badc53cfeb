//! Nothing to use: this package holds the end-to-end tests of smolsock's stream
//! adapters (`tests/`), apart from the crate so that its examples build without
//! tokio.
#![no_std]
