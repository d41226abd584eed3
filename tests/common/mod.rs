//! benches/reload.rs compiles the integration tests' shared helpers through this path
//! (`#[path = "../tests/common/mod.rs"]`). The bench uses a few of them, so the rest would be
//! dead code there; the test crate itself (tests/it) compiles them without this allowance.
#![allow(dead_code)]

#[path = "../it/common/mod.rs"]
mod shared;

pub use shared::*;
