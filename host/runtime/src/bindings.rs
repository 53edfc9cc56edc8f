//! The host's `bindgen!`s: Rust types and glue for the `extractor` world of every contract this
//! host runs, one module per version (`wit/0.1.0`, `wit/0.2.0`). A released version is frozen, so
//! its module never changes; a plugin is bound to the module of the version it was built for
//! ([`crate::plugin::World`]).

/// `qpf:extractor@0.1.0`: output files have no mode (all are generated).
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "extractor",
        path: "../../wit/0.1.0",
    });
}

/// `qpf:extractor@0.2.0`: output files are `generated` or `scaffold`.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "extractor",
        path: "../../wit/0.2.0",
    });
}
