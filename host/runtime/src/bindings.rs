//! The one `bindgen!` of the host: Rust types and glue for the `extractor` world of `wit/0.1.0`.

wasmtime::component::bindgen!({
    world: "extractor",
    path: "../../wit/0.1.0",
});
