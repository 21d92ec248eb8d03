//! Cross-module scenarios against the real application over HTTP, each run on every
//! topology (the monolith; every module in its own process behind an edge; and that split
//! with a database per process and events through Kafka), and the architecture test.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

/// Runs each scenario (an `async fn(Topology)` of the file) on every topology, as
/// `<file>::monolith::<scenario>`, `<file>::split::<scenario>` and
/// `<file>::split_over_kafka::<scenario>`.
macro_rules! on_every_topology {
    ($($scenario:ident),+ $(,)?) => {
        mod monolith {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(bulkhead_tests::Topology::Monolith).await;
                }
            )+
        }
        mod split {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(bulkhead_tests::Topology::Split).await;
                }
            )+
        }
        mod split_over_kafka {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(bulkhead_tests::Topology::SplitOverKafka).await;
                }
            )+
        }
    };
}

mod architecture;
mod jwt_attacks;
mod kafka;
mod notifications;
mod observability;
mod operations;
mod orders;
mod payments;
mod revocation;
mod role_matrix;
mod security;
mod shop;
mod topology;
mod traces;
mod users;
