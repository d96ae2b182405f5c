//! The gRPC side of the service: the generated contract code, the bundled inventory and payment
//! servers, and the resilient clients the service uses to reach them.

/// Code generated from `proto/` by `build.rs` (protox + tonic-prost-build).
pub mod proto {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("common.v1");
        }
    }
    pub mod reservation {
        pub mod v1 {
            tonic::include_proto!("reservation.v1");
        }
    }
    pub mod payment {
        pub mod v1 {
            tonic::include_proto!("payment.v1");
        }
    }
}
