//! Compile the gRPC contracts under `proto/` with the pure-Rust `protox` (no system `protoc`) and
//! generate the prost messages and tonic clients and servers from its file descriptor set.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: [&str; 3] = [
        "proto/common/v1/common.proto",
        "proto/reservation/v1/inventory.proto",
        "proto/payment/v1/payment.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
