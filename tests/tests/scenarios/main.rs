//! Cross-module scenarios against the real application over HTTP, each run on both
//! topologies (the monolith, and every module in its own process behind an edge), and the
//! architecture test.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

/// Runs each scenario (an `async fn(Topology)` of the file) on both topologies, as
/// `<file>::monolith::<scenario>` and `<file>::split::<scenario>`.
macro_rules! on_both_topologies {
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
    };
}

mod architecture;
mod jwt_attacks;
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
