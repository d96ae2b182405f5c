//! `grpc.health.v1` (tonic-health): served by the inventory and payment servers (Kubernetes' gRPC
//! probes ask it), and asked by the API's readiness about its peers.

use std::time::Duration;

use futures::FutureExt;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::HealthReporter;

use crate::config::GrpcClientSettings;

/// `routes` with the health service added, reporting `S` (and the server as a whole, `""`) SERVING.
pub fn with_health<S: NamedService>(routes: Routes) -> Routes {
    let reporter = HealthReporter::new();
    // A fresh reporter's lock is held by no one: the update completes on its first poll.
    reporter
        .set_serving::<S>()
        .now_or_never()
        .expect("an uncontended health status update");
    routes.add_service(tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(reporter),
    ))
}

/// The health of one gRPC peer, as readiness sees it.
pub struct PeerHealth {
    pub name: &'static str,
    service: String,
    /// `None` for a bundled peer called in process: it answers whenever this process does, as its
    /// loopback server's health service (always SERVING) would.
    client: Option<HealthClient<Channel>>,
    timeout: Duration,
}

impl PeerHealth {
    /// A checker of `service` at `address`, on its own lazily connecting channel (readiness must not
    /// queue behind the calls' bulkhead nor count in their circuit breaker).
    pub fn new(
        name: &'static str,
        service: &str,
        address: &str,
        settings: &GrpcClientSettings,
    ) -> Result<Self, String> {
        // Not a hot-path call: a busy peer's health answer may take longer than one call's
        // deadline without making the replica unready; still well within a probe's timeout.
        let timeout = settings
            .timeout
            .clamp(Duration::from_secs(1), Duration::from_secs(2));
        let channel = super::channel(
            address,
            &GrpcClientSettings {
                timeout,
                ..settings.clone()
            },
        )?;
        Ok(Self {
            name,
            service: service.to_owned(),
            client: Some(HealthClient::new(channel)),
            timeout,
        })
    }

    /// The check of a bundled peer called in process: always `Ok`.
    pub fn in_process(name: &'static str, service: &str) -> Self {
        Self {
            name,
            service: service.to_owned(),
            client: None,
            timeout: Duration::ZERO,
        }
    }

    /// `Ok` when the peer answers SERVING for its service within the deadline.
    pub async fn check(&self) -> Result<(), String> {
        let Some(mut client) = self.client.clone() else {
            return Ok(());
        };
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: self.service.clone(),
        });
        req.set_timeout(self.timeout);
        match tokio::time::timeout(self.timeout, client.check(req)).await {
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
            Ok(Ok(r)) => match r.into_inner().status() {
                ServingStatus::Serving => Ok(()),
                other => Err(format!("{other:?}")),
            },
        }
    }
}
